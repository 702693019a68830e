//! Adam / AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019) over every float parameter
//! of a module, with moments keyed by module path so they can be checkpointed with the
//! weights and restored exactly (native training only).

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::base::host::{host_vec, scalar};
use crate::error::{Error, Result};
use crate::io::weights::{Checkpoint, ModulePath};

/// First-moment decay.
pub const BETA1: f64 = 0.9;
/// Second-moment decay.
pub const BETA2: f64 = 0.999;
/// Denominator floor.
pub const EPS: f64 = 1e-8;

/// Optimiser state.
#[derive(Debug, Default)]
pub struct Adam {
    /// (m, v) per parameter path, flattened.
    pub moments: BTreeMap<String, (Tensor<1>, Tensor<1>)>,
    /// Decoupled weight decay (AdamW); 0 for plain Adam.
    pub weight_decay: f64,
}

impl Adam {
    /// Plain Adam, or AdamW with `weight_decay` > 0.
    pub fn new(weight_decay: f64) -> Self {
        Self {
            moments: BTreeMap::new(),
            weight_decay,
        }
    }

    /// One update of every parameter that has a gradient; `t` counts steps from 1.
    pub fn step<M: Module>(&mut self, module: M, grads: &Gradients, lr: f64, t: i32) -> M {
        self.step_from(module, Grads::Autodiff(grads), lr, t)
    }

    /// [`Adam::step`] with gradients computed without autodiff: flattened (row-major), on
    /// the plain device, keyed by parameter; parameters without one are left as they are.
    pub fn step_with<M: Module>(
        &mut self,
        module: M,
        grads: &HashMap<ParamId, Tensor<1>>,
        lr: f64,
        t: i32,
    ) -> M {
        self.step_from(module, Grads::Host(grads), lr, t)
    }

    fn step_from<M: Module>(&mut self, module: M, grads: Grads<'_>, lr: f64, t: i32) -> M {
        let mut mapper = Step {
            adam: self,
            grads,
            at: ModulePath::default(),
            lr,
            t,
        };
        module.map(&mut mapper)
    }

    /// The moments as safetensors bytes (`m.<path>`, `v.<path>`).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        for (name, (m, v)) in &self.moments {
            for (tag, t) in [("m", m), ("v", v)] {
                let data = host_vec(t.clone())?;
                let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
                raw.push((format!("{tag}.{name}"), data.len(), bytes));
            }
        }
        let views = raw
            .iter()
            .map(|(n, len, b)| TensorView::new(Dtype::F32, vec![*len], b).map(|v| (n.clone(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        safetensors::serialize(views, None).map_err(|e| Error::Invalid(e.to_string()))
    }

    /// Restores moments written by [`Adam::to_bytes`] onto `device` (a plain device: the
    /// moments live outside autodiff).
    pub fn load_bytes(&mut self, bytes: &[u8], device: &Device) -> Result<()> {
        let ckpt = Checkpoint::parse(bytes)?;
        self.moments.clear();
        for name in ckpt.names() {
            if let Some(path) = name.strip_prefix("m.") {
                let (m, shape) = ckpt.f32(&name)?;
                let (v, _) = ckpt.f32(&format!("v.{path}"))?;
                let t =
                    |x: Vec<f32>| Tensor::<1>::from_data(TensorData::new(x, [shape[0]]), device);
                self.moments.insert(path.to_string(), (t(m), t(v)));
            }
        }
        Ok(())
    }
}

/// Where a step's gradients come from.
enum Grads<'a> {
    Autodiff(&'a Gradients),
    Host(&'a HashMap<ParamId, Tensor<1>>),
}

struct Step<'a> {
    adam: &'a mut Adam,
    grads: Grads<'a>,
    at: ModulePath,
    lr: f64,
    t: i32,
}

impl ModuleMapper for Step<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let grad = match &self.grads {
            Grads::Autodiff(g) => tensor.grad(g).map(|g| g.reshape([n])),
            Grads::Host(g) => g.get(&id).cloned(),
        };
        let Some(g) = grad else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let mut w = tensor.inner().reshape([n]);
        let key = self.at.path();
        let (m, v) = match self.adam.moments.remove(&key) {
            Some(mv) => mv,
            None => (g.zeros_like(), g.zeros_like()),
        };
        let m = m * BETA1 + g.clone() * (1.0 - BETA1);
        let v = v * BETA2 + g.square() * (1.0 - BETA2);
        let m_hat = m.clone() / (1.0 - BETA1.powi(self.t));
        let v_hat = v.clone() / (1.0 - BETA2.powi(self.t));
        if self.adam.weight_decay > 0.0 {
            w = w.clone() - w * (self.lr * self.adam.weight_decay);
        }
        let w = w - m_hat / (v_hat.sqrt() + EPS) * self.lr;
        self.adam.moments.insert(key, (m, v));
        let w = Tensor::from_inner(w.reshape(dims)).require_grad();
        Param::from_mapped_value(id, w, mapper)
    }
}

/// Reads a training loss back and refuses a non-finite one (the run diverged).
pub fn checked_loss(loss: &Tensor<1>, step: usize) -> Result<f64> {
    finite_loss(scalar(loss.clone())?, step)
}

/// `value`, unless it is not finite: then the error that says the run diverged at `step`.
pub fn finite_loss(value: f64, step: usize) -> Result<f64> {
    if !value.is_finite() {
        return Err(Error::Invalid(format!(
            "training diverged at step {step} (loss {value})"
        )));
    }
    Ok(value)
}

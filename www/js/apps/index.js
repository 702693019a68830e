// The paper's three applications in the page (issue 6): the attribute probe (probe.js),
// cross-modal adversarial examples with their defense (attack.js), and modality-specific
// control with the demo world's image decoder (control.js). All model work goes through the
// engine worker; these modules only build controls, send requests and draw results. Every
// piece of data is set as text.

import { mountProbe } from "./probe.js";
import { mountAttack } from "./attack.js";
import { mountControl } from "./control.js";

// sections: {probe, attack, control} root elements (a missing one is skipped).
// ctx: {call(cmd, args, opts) -> Promise, engineReady() -> Promise, backend() -> string,
//       isDemo() -> bool, assetBase: URL, featureClass(id) -> class, openFeature(id), result: {}}
// Returns each mounted panel's functions (the tests drive them through __monoscopeDebug).
export function mountApplications(sections, ctx) {
  const api = {};
  if (sections.probe) api.probe = mountProbe(sections.probe, ctx);
  if (sections.attack) api.attack = mountAttack(sections.attack, ctx);
  if (sections.control) api.control = mountControl(sections.control, ctx);
  return api;
}

//! A sequence's pass cut between engines that share no memory, by token rows
//! ([`RowSplit`]) or by output columns ([`ColSplit`]): one interface for the page's
//! workers, which run either in rounds of "give my share, take everyone's".

use std::str::FromStr;

use super::{ColSplit, RowSplit};
use crate::error::{Error, Result};

/// How a split pass is cut between engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// By token rows: one swap a layer (keys and values), each part streaming every
    /// weight ([`RowSplit`]).
    Rows,
    /// By output columns: four swaps a layer, each part streaming its columns of each
    /// weight ([`ColSplit`]).
    Cols,
    /// By output columns where every part gets a head ([`super::Encoder::column_parts`]),
    /// else by token rows: the page's choice (in the browser, columns took 0.88-0.89 of the
    /// time of rows at ViT-B/32 with two workers; README, "Where issue 12 stands").
    Auto,
}

impl FromStr for Cut {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rows" => Ok(Self::Rows),
            "cols" => Ok(Self::Cols),
            "auto" => Ok(Self::Auto),
            _ => Err(Error::Invalid(format!(
                "a split pass is cut by \"rows\", \"cols\" or \"auto\", not {s:?}"
            ))),
        }
    }
}

/// One part of a split pass, either cut. Call [`SplitPass::share`], then
/// [`SplitPass::gather`] with every part's share in part order, on every part in step,
/// until [`SplitPass::done`].
pub enum SplitPass {
    /// Cut by token rows.
    Rows(RowSplit),
    /// Cut by output columns.
    Cols(ColSplit),
}

impl SplitPass {
    /// This part's share of the current round ([`RowSplit::keys_values`],
    /// [`ColSplit::share`]).
    pub fn share(&mut self) -> Result<Vec<f32>> {
        match self {
            Self::Rows(s) => s.keys_values(),
            Self::Cols(s) => s.share(),
        }
    }

    /// Takes every part's share of the current round, in part order ([`RowSplit::attend`],
    /// [`ColSplit::gather`]).
    pub fn gather(&mut self, shares: &[&[f32]]) -> Result<()> {
        match self {
            Self::Rows(s) => s.attend(shares),
            Self::Cols(s) => s.gather(shares),
        }
    }

    /// Whether every layer has run.
    pub fn done(&self) -> bool {
        match self {
            Self::Rows(s) => s.done(),
            Self::Cols(s) => s.done(),
        }
    }

    /// Which part of the pass this is.
    pub fn part(&self) -> usize {
        match self {
            Self::Rows(s) => s.part(),
            Self::Cols(s) => s.part(),
        }
    }

    /// The pooled token's final row (`[width]`) once done, on a part that holds it (cut by
    /// rows, the one with its row; cut by columns, every part).
    pub fn output(&self) -> Option<&[f32]> {
        match self {
            Self::Rows(s) => s.output(),
            Self::Cols(s) => s.output(),
        }
    }
}

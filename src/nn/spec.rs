//! Which activation each of a ResNet's activation slots holds, as a short readable
//! string.
//!
//! Each BasicBlock ends in one activation slot (after the residual addition); a spec
//! picks slots by group and block, 1-based, and places one activation there (SPARTA
//! unless an option `act=NAME` names another):
//!
//! | spec                  | slots                                             |
//! |-----------------------|---------------------------------------------------|
//! | `relu`                | none (plain ResNet)                               |
//! | `G1-4.B2`             | block 2 of groups 1–4 (the paper's default)       |
//! | `G4.B2`               | block 2 of group 4 only                           |
//! | `G1,3.Blast`          | the last block of groups 1 and 3                  |
//! | `G*.B*`  or `all`     | every block                                       |
//! | `G1.B1+G4.B2`         | the union of terms                                |
//!
//! Options follow after spaces: `act=NAME` (the placed activation: `sparta`, or one of
//! the pointwise activations below), and for SPARTA `nodpnet` (SPARTA-w/o-DPNet),
//! `block=B` (SANet on B×B average-pooled input, paper Eq. 6), `frozen` (the SPARTA
//! layers' DSCANet weights are not trained: the paper's transferred SPARTA, with weights
//! loaded from another model), e.g. `G1-4.B2 nodpnet block=2`.
//!
//! Everywhere else (the stem, inside the blocks, the other post-residual slots) the
//! network uses its base activation, ReLU unless an option `base=NAME` says otherwise:
//! one of the paper's smooth baselines `elu`, `gelu`, `silu` (or `swish`), `softplus`
//! ([`Pointwise`]). A plain network with one of them is spelt by its name alone: `gelu`
//! is `relu base=gelu`.

use crate::error::{Error, Result};
use crate::nn::activation::ActivationKind;
use crate::ops::pointwise::Pointwise;

/// The activation a spec's name stands for: the one line a new activation adds here.
fn named(name: &str) -> Option<ActivationKind> {
    match name {
        "sparta" => Some(ActivationKind::SPARTA),
        _ => Pointwise::from_name(name).map(ActivationKind::Pointwise),
    }
}

/// Which blocks of a group (or which groups) a term selects.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Select {
    All,
    Last,
    Indices(Vec<usize>),
}

/// A parsed activation spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivationSpec {
    terms: Vec<(Select, Select)>,
    /// The activation of the slots the terms select.
    pub placed: ActivationKind,
    /// The activation everywhere else.
    pub base: Pointwise,
}

/// The largest group or block index a spec may name: far above any ResNet's (4 groups
/// of at most 6 blocks here), low enough that a range in a file cannot exhaust memory.
const MAX_INDEX: usize = 64;

fn parse_select(s: &str, what: &str, spec: &str) -> Result<Select> {
    let bad = || {
        Error::Config(format!(
            "activation spec {spec:?}: cannot read {what} {s:?} (indices 1 to {MAX_INDEX})"
        ))
    };
    match s {
        "*" => return Ok(Select::All),
        "last" if what == "block" => return Ok(Select::Last),
        _ => {}
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let num = |t: &str| {
            t.parse::<usize>()
                .ok()
                .filter(|v| (1..=MAX_INDEX).contains(v))
                .ok_or_else(bad)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(Select::Indices(out))
}

impl ActivationSpec {
    /// Parses a spec (see the module docs).
    pub fn parse(spec: &str) -> Result<Self> {
        let mut words = spec.split_whitespace();
        let placement = words.next().unwrap_or("relu");
        let mut out = ActivationSpec {
            terms: Vec::new(),
            placed: ActivationKind::SPARTA,
            base: Pointwise::Relu,
        };
        let (mut dpnet, mut block, mut frozen) = (true, 1, false);
        let mut sparta_options = Vec::new();
        match Pointwise::from_name(placement) {
            Some(base) => out.base = base,
            None if placement == "all" => out.terms.push((Select::All, Select::All)),
            None => {
                for term in placement.split('+') {
                    let (g, b) = term
                        .strip_prefix('G')
                        .and_then(|t| t.split_once(".B"))
                        .ok_or_else(|| {
                            Error::Config(format!(
                                "activation spec {spec:?}: term {term:?} is not G<groups>.B<blocks> \
                                 (nor `all`, nor one of the activations {})",
                                Pointwise::ALL.map(Pointwise::name).join(", ")
                            ))
                        })?;
                    out.terms.push((
                        parse_select(g, "group", spec)?,
                        parse_select(b, "block", spec)?,
                    ));
                }
            }
        }
        for opt in words {
            match opt.split_once('=') {
                None if opt == "nodpnet" => {
                    dpnet = false;
                    sparta_options.push(opt);
                }
                None if opt == "frozen" => {
                    frozen = true;
                    sparta_options.push(opt);
                }
                Some(("act", name)) => {
                    out.placed = named(name).ok_or_else(|| {
                        Error::Config(format!(
                            "activation spec {spec:?}: activation {name:?} is none of sparta, {}",
                            Pointwise::ALL.map(Pointwise::name).join(", ")
                        ))
                    })?;
                }
                Some(("base", name)) => {
                    out.base = Pointwise::from_name(name).ok_or_else(|| {
                        Error::Config(format!(
                            "activation spec {spec:?}: base activation {name:?} is none of {}",
                            Pointwise::ALL.map(Pointwise::name).join(", ")
                        ))
                    })?;
                }
                Some(("block", b)) => {
                    block = b.parse().ok().filter(|&b| b >= 1).ok_or_else(|| {
                        Error::Config(format!("activation spec {spec:?}: block size {b:?}"))
                    })?;
                    sparta_options.push(opt);
                }
                _ => {
                    return Err(Error::Config(format!(
                        "activation spec {spec:?}: unknown option {opt:?}"
                    )))
                }
            }
        }
        match out.placed {
            ActivationKind::Sparta { .. } => {
                out.placed = ActivationKind::Sparta {
                    dpnet,
                    block,
                    frozen,
                }
            }
            _ if !sparta_options.is_empty() => {
                return Err(Error::Config(format!(
                    "activation spec {spec:?}: {} only apply to SPARTA, not to {}",
                    sparta_options.join(", "),
                    out.placed.name()
                )))
            }
            _ => {}
        }
        Ok(out)
    }

    /// Whether any slot holds the placed activation (false: the base activation
    /// everywhere).
    pub fn places_any(&self) -> bool {
        !self.terms.is_empty()
    }

    /// For a network with `blocks[g]` blocks in group `g`, which block slots hold the
    /// placed activation (`[group][block]`); errors if the spec names a group or block
    /// that does not exist.
    pub fn resolve(&self, blocks: &[usize]) -> Result<Vec<Vec<bool>>> {
        let mut on: Vec<Vec<bool>> = blocks.iter().map(|&b| vec![false; b]).collect();
        let missing = |what: &str, i: usize| {
            Error::Config(format!(
                "activation spec names {what} {i}, the network has {blocks:?} blocks per group"
            ))
        };
        for (gs, bs) in &self.terms {
            let groups: Vec<usize> = match gs {
                Select::All | Select::Last => (1..=blocks.len()).collect(),
                Select::Indices(v) => v.clone(),
            };
            for g in groups {
                let n = *blocks.get(g - 1).ok_or_else(|| missing("group", g))?;
                let sel: Vec<usize> = match bs {
                    Select::All => (1..=n).collect(),
                    Select::Last => vec![n],
                    Select::Indices(v) => v.clone(),
                };
                for b in sel {
                    *on[g - 1]
                        .get_mut(b.wrapping_sub(1))
                        .ok_or_else(|| missing("block", b))? = true;
                }
            }
        }
        Ok(on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let r18 = [2, 2, 2, 2];
        let on = |s: &str| ActivationSpec::parse(s).unwrap().resolve(&r18).unwrap();
        let t = true;
        let f = false;
        assert_eq!(on("G1-4.B2"), vec![vec![f, t]; 4]);
        assert_eq!(
            on("G4.B2"),
            vec![vec![f, f], vec![f, f], vec![f, f], vec![f, t]]
        );
        assert_eq!(on("G1,3.Blast")[2], vec![f, t]);
        assert_eq!(on("G*.B*"), vec![vec![t, t]; 4]);
        assert_eq!(on("all"), on("G*.B*"));
        assert_eq!(on("relu"), vec![vec![f, f]; 4]);
        assert_eq!(on("G1.B1+G4.B2")[0], vec![t, f]);
        let sparta = |dpnet, block, frozen| ActivationKind::Sparta {
            dpnet,
            block,
            frozen,
        };
        let placed = |s: &str| ActivationSpec::parse(s).unwrap().placed;
        assert_eq!(placed("G4.B2 frozen"), sparta(true, 1, true));
        assert_eq!(placed("G4.B2"), sparta(true, 1, false));
        let s = ActivationSpec::parse("G1-4.B2 nodpnet block=2").unwrap();
        assert_eq!(s.placed, sparta(false, 2, false));
        assert!(s.base == Pointwise::Relu && s.places_any());
        assert!(!ActivationSpec::parse("relu").unwrap().places_any());
        let g = ActivationSpec::parse("G2.B1 act=gelu").unwrap();
        assert_eq!(g.placed, ActivationKind::Pointwise(Pointwise::Gelu));
        assert_eq!(g.resolve(&r18).unwrap(), on("G2.B1"));
        assert_eq!(placed("G2.B1 act=sparta nodpnet"), sparta(false, 1, false));
        let g = ActivationSpec::parse("gelu").unwrap();
        assert_eq!(
            (g.base, g.resolve(&r18).unwrap()),
            (Pointwise::Gelu, on("relu"))
        );
        let s = ActivationSpec::parse("G4.B2 base=swish").unwrap();
        assert_eq!(
            (s.base, s.resolve(&r18).unwrap()),
            (Pointwise::Silu, on("G4.B2"))
        );
    }

    #[test]
    fn rejects_bad_specs_and_missing_blocks() {
        for bad in [
            "G0.B1",
            "G1-4",
            "G2-1.B1",
            "G1.B2 fast",
            "G1.B1 block=0",
            "X1.B1",
            "G1.B1 base=tanh",
            "G1.B1 act=tanh",
            "G1.B1 act=gelu nodpnet",
            "G1.B1 act=elu block=2",
            "G1-99999999999.B1",
            "G1.B65",
        ] {
            assert!(ActivationSpec::parse(bad).is_err(), "{bad}");
        }
        let s = ActivationSpec::parse("G1-4.B2").unwrap();
        assert!(s.resolve(&[1, 1, 1, 1]).is_err());
        assert!(ActivationSpec::parse("G5.B1")
            .unwrap()
            .resolve(&[2, 2, 2, 2])
            .is_err());
    }
}

//! Robustness suites: named sets of attacks run over a data set, with each attack's
//! error, the worst case over all of them image by image, and the sanity checks of
//! [`super::sanity`].
//!
//! | suite | attacks |
//! |---|---|
//! | `paper` | the paper's protocol: PGD (targeted by default) at each of its iteration counts (10, 30, 50) |
//! | `quick` | APGD-CE and APGD-T (targeted DLR, 9 target classes), `apgd_iterations` (100) each |
//! | `standard` | `quick`, and Square with 5,000 queries (`square_queries`) |
//!
//! Suites combine (`paper,quick`); Square joins any suite when a query budget is given.
//! For the sanity checks every evaluation also runs untargeted PGD-20 at ε = 1 (check
//! (a)) and, with APGD, APGD-CE at a tenth of its iterations (check (b): the
//! error must not fall from it to the full run); the latter counts in the worst case,
//! the former does not (another ε).

use super::apgd::ApgdConfig;
use super::evaluate::{evaluate_attacks, fraction, RobustnessReport};
use super::pgd::PgdConfig;
use super::sanity::{check, Sanity};
use super::settings::Attack;
use super::square::SquareConfig;
use super::transfer::AdversarialImages;
use super::worst_case::worst_case;
use crate::classifier::Classifier;
use crate::data::Dataset;
use crate::error::{Error, Result};

/// A named set of attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// The paper's targeted PGD at its iteration counts.
    Paper,
    /// APGD-CE, APGD-T and Square.
    Standard,
    /// APGD-CE and APGD-T.
    Quick,
}

impl std::str::FromStr for Suite {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "paper" => Ok(Suite::Paper),
            "standard" => Ok(Suite::Standard),
            "quick" => Ok(Suite::Quick),
            _ => Err(Error::Config(format!(
                "suite {s:?}: expected paper, standard or quick"
            ))),
        }
    }
}

impl Suite {
    /// `paper`, `standard`, `quick`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Paper => "paper",
            Suite::Standard => "standard",
            Suite::Quick => "quick",
        }
    }
}

/// The Square attack's query budget in the `standard` suite (AutoAttack's).
pub const STANDARD_SQUARE_QUERIES: usize = 5_000;

/// The iterations of check (a)'s attack at ε = 1.
pub const UNBOUNDED_ITERATIONS: usize = 20;

/// What a suite evaluation runs.
#[derive(Clone, Debug, PartialEq)]
pub struct SuiteConfig {
    /// The suites, at least one.
    pub suites: Vec<Suite>,
    /// The paper suite's PGD (its iterations unused); its ε and restarts are every
    /// attack's.
    pub pgd: PgdConfig,
    /// The paper suite's PGD iteration counts.
    pub pgd_iterations: Vec<usize>,
    /// APGD's iterations in `quick` and `standard`.
    pub apgd_iterations: usize,
    /// Square's query budget: `standard`'s (else 5,000), or Square added to the others.
    pub square_queries: Option<usize>,
}

impl SuiteConfig {
    /// The attacks at the evaluation's ε, in report order, each once; checked.
    pub fn attacks(&self) -> Result<Vec<Attack>> {
        if self.suites.is_empty() {
            return Err(Error::Config("no suite to run".into()));
        }
        let eps = self.pgd.epsilon;
        let mut out: Vec<Attack> = Vec::new();
        let mut add = |a: Attack| {
            if !out.contains(&a) {
                out.push(a);
            }
        };
        if self.suites.contains(&Suite::Paper) {
            if self.pgd_iterations.is_empty() {
                return Err(Error::Config(
                    "the paper suite needs PGD iteration counts".into(),
                ));
            }
            for &k in &self.pgd_iterations {
                add(Attack::Pgd(PgdConfig {
                    iterations: k,
                    ..self.pgd
                }));
            }
        }
        let apgd = self.suites.iter().any(|s| *s != Suite::Paper);
        if apgd {
            let k = self.apgd_iterations;
            let with_restarts = |c: ApgdConfig| ApgdConfig {
                restarts: self.pgd.restarts,
                ..c
            };
            let tenth = k.div_ceil(10);
            if tenth < k {
                add(Attack::Apgd(with_restarts(ApgdConfig::ce(eps, tenth))));
            }
            add(Attack::Apgd(with_restarts(ApgdConfig::ce(eps, k))));
            add(Attack::Apgd(with_restarts(ApgdConfig::targeted_dlr(
                eps, k,
            ))));
        }
        let queries = match self.square_queries {
            Some(q) => Some(q),
            None if self.suites.contains(&Suite::Standard) => Some(STANDARD_SQUARE_QUERIES),
            None => None,
        };
        if let Some(queries) = queries {
            add(Attack::Square(SquareConfig {
                epsilon: eps,
                queries,
            }));
        }
        for a in &out {
            a.validate()?;
        }
        Ok(out)
    }

    /// Check (a)'s attack: untargeted PGD at ε = 1, step 1/4, from a random start,
    /// judged by its last iterate, so that gradients that carry no information (which
    /// still find misclassified points along a random walk) leave images unbroken.
    pub fn unbounded(&self) -> Attack {
        Attack::Pgd(PgdConfig {
            epsilon: 1.0,
            step: 0.25,
            iterations: UNBOUNDED_ITERATIONS,
            restarts: 1,
            random_start: true,
            goal: super::pgd::Goal::Untargeted,
        })
    }
}

/// What a suite evaluation measured.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SuiteReport {
    /// Images evaluated.
    pub images: usize,
    /// Fraction of clean images misclassified.
    pub clean_error: f64,
    /// Fraction of images misclassified clean or by any attack: the headline.
    pub worst_case_error: f64,
    /// One row per attack, then one per file of transferred images.
    pub attacks: Vec<RobustnessReport>,
    /// Check (a)'s attack at ε = 1 (not in the worst case).
    pub unbounded: RobustnessReport,
    /// The sanity checks.
    pub sanity: Sanity,
}

/// Runs `config`'s attacks on `data` in batches of `batch` (random streams as
/// [`evaluate_attacks`] draws them from `seed`), evaluates the model on each set of
/// `transfers` (checked against `data` at the suite's ε first), and reports errors,
/// the worst case and the sanity checks. `progress` gets the images done.
pub fn run_suite<C: Classifier + ?Sized>(
    model: &mut C,
    data: &Dataset,
    batch: usize,
    config: &SuiteConfig,
    seed: u64,
    transfers: &[AdversarialImages],
    progress: impl FnMut(usize),
) -> Result<SuiteReport> {
    let mut attacks = config.attacks()?;
    for t in transfers {
        t.check_against(data, config.pgd.epsilon)?;
    }
    attacks.push(config.unbounded());
    let mut evaluation = evaluate_attacks(model, data, batch, &attacks, seed, false, progress)?;
    let unbounded = evaluation
        .attacks
        .pop()
        .expect("the attack at ε = 1 was run");
    let clean_error = evaluation.clean_error();
    for t in transfers {
        evaluation
            .attacks
            .push(t.evaluate(model, batch, clean_error)?);
    }
    let rows = &evaluation.attacks;
    let broken: Vec<&[bool]> = rows.iter().map(|e| &e.broken[..]).collect();
    let worst = worst_case(&evaluation.clean_wrong, &broken)?;
    let sanity = check(&evaluation.clean_wrong, rows, Some(&unbounded.report))?;
    Ok(SuiteReport {
        images: data.len(),
        clean_error,
        worst_case_error: fraction(&worst),
        attacks: evaluation.attacks.into_iter().map(|e| e.report).collect(),
        unbounded: unbounded.report,
        sanity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::pgd::Goal;
    use crate::attack::sanity::Status;
    use crate::testing::{Mask, MaskedGradients, SoftmaxRegression};

    /// 60 images of 4×4 and 5 classes, labelled by a model so that all are classified
    /// correctly and every image is attacked.
    fn data(model: &mut SoftmaxRegression) -> Dataset {
        let images: Vec<u8> = (0..60 * 16).map(|i| ((i * 97 + 13) % 256) as u8).collect();
        let mut d = Dataset {
            name: "noise".into(),
            images,
            labels: vec![0; 60],
            channels: 1,
            height: 4,
            width: 4,
            classes: 5,
        };
        let mut x = Vec::new();
        let indices: Vec<usize> = (0..60).collect();
        d.batch(&indices, &mut x);
        let logits = model.logits(&x, [60, 1, 4, 4]).unwrap();
        d.labels = crate::attack::pgd::argmax_rows(&logits, 5)
            .iter()
            .map(|&l| l as u16)
            .collect();
        d
    }

    fn model() -> SoftmaxRegression {
        SoftmaxRegression::sharp(16, 5, 3)
    }

    fn config(suites: Vec<Suite>) -> SuiteConfig {
        SuiteConfig {
            suites,
            pgd: PgdConfig {
                epsilon: 0.03,
                step: 0.01,
                ..PgdConfig::paper(0)
            },
            pgd_iterations: vec![2, 6],
            apgd_iterations: 20,
            square_queries: Some(60),
        }
    }

    fn status(report: &SuiteReport) -> Vec<Status> {
        report.sanity.checks.iter().map(|c| c.status).collect()
    }

    /// The plain model passes every check; the worst case is at least every attack's
    /// error. Fails when check (d) wants a maximised loss to fall (checked).
    #[test]
    fn a_plain_model_passes_and_the_worst_case_bounds_every_attack() {
        let mut m = model();
        let d = data(&mut m);
        let c = config(vec![Suite::Paper, Suite::Quick]);
        let r = run_suite(&mut m, &d, 16, &c, 1, &[], |_| {}).unwrap();
        let names: Vec<&str> = r.attacks.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "targeted PGD-2",
                "targeted PGD-6",
                "APGD-CE-2",
                "APGD-CE-20",
                "APGD-T-20",
                "Square-60"
            ]
        );
        assert_eq!(r.clean_error, 0.0);
        assert!(!r.sanity.possible_gradient_masking, "{:#?}", r.sanity);
        assert_eq!(status(&r), [Status::Passed; 4]);
        let max = r
            .attacks
            .iter()
            .map(|a| a.adversarial_error)
            .fold(0.0, f64::max);
        assert!(r.worst_case_error >= max && max > 0.0);
        assert!(r.unbounded.adversarial_error >= 0.99);
        // Quick alone: the same APGD rows, drawn from the same streams.
        let q = run_suite(&mut m, &d, 16, &config(vec![Suite::Quick]), 1, &[], |_| {}).unwrap();
        assert_eq!(q.attacks[..3], r.attacks[2..5]);
    }

    /// Models built to hide their gradients, zero or noise, with honest logits: the
    /// sanity block flags them, check (a) among others. Fails when check (a) accepts
    /// any error (checked).
    #[test]
    fn masked_gradients_are_flagged() {
        for mask in [Mask::Zero, Mask::Noise] {
            let d = data(&mut model());
            let mut m = MaskedGradients::new(model(), mask);
            let c = config(vec![Suite::Standard]);
            let r = run_suite(&mut m, &d, 16, &c, 1, &[], |_| {}).unwrap();
            assert!(
                r.sanity.possible_gradient_masking,
                "{mask:?}: {:#?}",
                r.sanity
            );
            assert_eq!(r.sanity.checks[0].status, Status::Failed, "{mask:?}: (a)");
            let square = r
                .attacks
                .iter()
                .find(|a| a.name.starts_with("Square"))
                .unwrap();
            let white = r.attacks.iter().filter(|a| a.attack.white_box());
            assert!(white
                .clone()
                .all(|a| a.adversarial_error <= square.adversarial_error));
        }
    }

    #[test]
    fn suites_compose_and_bad_ones_are_errors() {
        assert_eq!("quick".parse::<Suite>().unwrap(), Suite::Quick);
        let msg = "fast".parse::<Suite>().unwrap_err().to_string();
        assert!(msg.contains("paper, standard or quick"), "{msg}");
        let mut c = config(vec![Suite::Standard]);
        c.square_queries = None;
        let a = c.attacks().unwrap();
        assert_eq!(
            a.last(),
            Some(&Attack::Square(SquareConfig {
                epsilon: 0.03,
                queries: 5000
            }))
        );
        c.suites.clear();
        assert!(c.attacks().is_err());
        let mut c = config(vec![Suite::Quick]);
        c.apgd_iterations = 0;
        assert!(c.attacks().is_err());
        c.apgd_iterations = 1;
        assert_eq!(
            c.attacks().unwrap().len(),
            3,
            "no shorter APGD-CE than 1 step"
        );
        let mut c = config(vec![Suite::Paper]);
        c.pgd.goal = Goal::Untargeted;
        c.square_queries = Some(0);
        assert!(c.attacks().is_err());
    }
}

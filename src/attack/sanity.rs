//! Checks that tell gradient masking from robustness (Athalye et al. 2018; Carlini et
//! al. 2019, "On evaluating adversarial robustness"), over the rows of an evaluation.
//! A model that only hides its gradients (zero, noisy or damped ones) fails at least one;
//! "possible gradient masking" is flagged when any fails:
//!
//! - (a) an untargeted white-box attack at ε = 1 (the whole pixel range) reaches at
//!   least 99 % error with its last iterate: with the whole image to change, only a
//!   model that gives the attack no usable gradient keeps its answer;
//! - (b) the error never falls as iterations grow, among runs of one attack that
//!   differ only in their iterations;
//! - (c) the white-box worst case is at least the error of every black-box (Square)
//!   and transfer attack: gradients that point nowhere lose to random search and to
//!   another model's gradients;
//! - (d) every white-box attack's loss moves its way (up when it maximises, down when
//!   it minimises) from the first step to the last, averaged over the images.

use super::evaluate::{Evaluated, RobustnessReport};
use super::pgd::PgdConfig;
use super::settings::{Attack, Objective};
use super::worst_case::worst_case;
use crate::error::Result;

/// The error the untargeted attack at ε = 1 must reach for check (a).
pub const UNBOUNDED_ERROR: f64 = 0.99;

/// A check's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It holds.
    Passed,
    /// It does not: possible gradient masking.
    Failed,
    /// The evaluation has no rows it applies to.
    NotRun,
}

/// One check, with the numbers behind its result.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    /// `a`, `b`, `c` or `d`.
    pub id: String,
    /// What it demands.
    pub rule: String,
    /// Its result.
    pub status: Status,
    /// The numbers it compared.
    pub detail: String,
}

/// The sanity block of an evaluation report.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sanity {
    /// Whether any check failed.
    pub possible_gradient_masking: bool,
    /// The four checks, in order.
    pub checks: Vec<Check>,
}

/// Runs the four checks on the rows of an evaluation (`clean_wrong` per image; `rows`
/// the attacks at the evaluation's ε, transfer rows included) and the untargeted attack
/// at ε = 1 (`unbounded`, check (a); `None` leaves it not run).
pub fn check(
    clean_wrong: &[bool],
    rows: &[Evaluated],
    unbounded: Option<&RobustnessReport>,
) -> Result<Sanity> {
    let pct = |e: f64| format!("{:.1} %", 100.0 * e);
    let mut checks = Vec::new();

    let (status, detail) = match unbounded {
        None => (Status::NotRun, "no attack at ε = 1 was run".to_string()),
        Some(r) => (
            pass(r.adversarial_error >= UNBOUNDED_ERROR),
            format!(
                "{} at ε = 255/255: {} error",
                r.name,
                pct(r.adversarial_error)
            ),
        ),
    };
    checks.push(Check {
        id: "a".into(),
        rule: format!(
            "untargeted at ε = 1 gives at least {} error",
            pct(UNBOUNDED_ERROR)
        ),
        status,
        detail,
    });

    let mut ladders: Vec<Vec<&RobustnessReport>> = Vec::new();
    for r in rows
        .iter()
        .map(|e| &e.report)
        .filter(|r| r.transfer.is_none())
    {
        match ladders
            .iter_mut()
            .find(|l| same_but_iterations(&l[0].attack, &r.attack))
        {
            Some(l) => l.push(r),
            None => ladders.push(vec![r]),
        }
    }
    ladders.retain(|l| l.len() > 1);
    let mut falls = Vec::new();
    let mut seen = Vec::new();
    for ladder in &mut ladders {
        ladder.sort_by_key(|r| iterations(&r.attack));
        seen.push(
            ladder
                .iter()
                .map(|r| format!("{} {}", r.name, pct(r.adversarial_error)))
                .collect::<Vec<_>>()
                .join(" ≤ "),
        );
        for pair in ladder.windows(2) {
            if pair[1].adversarial_error < pair[0].adversarial_error {
                falls.push(format!("{} < {}", pair[1].name, pair[0].name));
            }
        }
    }
    checks.push(Check {
        id: "b".into(),
        rule: "the error never falls as iterations grow".into(),
        status: if ladders.is_empty() {
            Status::NotRun
        } else {
            pass(falls.is_empty())
        },
        detail: if falls.is_empty() {
            seen.join("; ")
        } else {
            format!("falls: {}", falls.join(", "))
        },
    });

    let white: Vec<&[bool]> = rows
        .iter()
        .filter(|e| e.report.transfer.is_none() && e.report.attack.white_box())
        .map(|e| &e.broken[..])
        .collect();
    let white_worst = super::evaluate::fraction(&worst_case(clean_wrong, &white)?);
    let others: Vec<&RobustnessReport> = rows
        .iter()
        .map(|e| &e.report)
        .filter(|r| r.transfer.is_some() || !r.attack.white_box())
        .collect();
    let above: Vec<String> = others
        .iter()
        .filter(|r| r.adversarial_error > white_worst)
        .map(|r| format!("{} {}", r.name, pct(r.adversarial_error)))
        .collect();
    checks.push(Check {
        id: "c".into(),
        rule: "the white-box worst case is at least the black-box and transfer errors".into(),
        status: if others.is_empty() {
            Status::NotRun
        } else {
            pass(above.is_empty())
        },
        detail: format!(
            "white-box worst case {}; {}",
            pct(white_worst),
            if others.is_empty() {
                "no black-box or transfer attack".to_string()
            } else if above.is_empty() {
                others
                    .iter()
                    .map(|r| format!("{} {}", r.name, pct(r.adversarial_error)))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                format!("above it: {}", above.join(", "))
            }
        ),
    });

    let mut curves = Vec::new();
    let mut wrong_way = Vec::new();
    for r in rows.iter().map(|e| &e.report) {
        let white_box = r.transfer.is_none() && r.attack.white_box();
        if !white_box || r.loss_mean.len() < 2 || r.curve_images == 0 {
            continue;
        }
        let (first, last) = (r.loss_mean[0], r.loss_mean[r.loss_mean.len() - 1]);
        let ok = match r.objective {
            Objective::Maximised => last > first,
            Objective::Minimised => last < first,
        };
        let line = format!("{} {first:.3} → {last:.3}", r.name);
        if !ok {
            wrong_way.push(line.clone());
        }
        curves.push(line);
    }
    checks.push(Check {
        id: "d".into(),
        rule: "each white-box attack's loss moves its way along the iterations".into(),
        status: if curves.is_empty() {
            Status::NotRun
        } else {
            pass(wrong_way.is_empty())
        },
        detail: if wrong_way.is_empty() {
            curves.join("; ")
        } else {
            format!("not moved its way: {}", wrong_way.join("; "))
        },
    });
    Ok(Sanity {
        possible_gradient_masking: checks.iter().any(|c| c.status == Status::Failed),
        checks,
    })
}

fn pass(ok: bool) -> Status {
    if ok {
        Status::Passed
    } else {
        Status::Failed
    }
}

fn iterations(attack: &Attack) -> usize {
    match attack {
        Attack::Pgd(c) => c.iterations,
        Attack::Apgd(c) => c.iterations,
        Attack::Square(c) => c.queries,
    }
}

/// Whether two attacks are one attack run for different numbers of iterations.
fn same_but_iterations(a: &Attack, b: &Attack) -> bool {
    match (a, b) {
        (Attack::Pgd(a), Attack::Pgd(b)) => {
            PgdConfig {
                iterations: 0,
                ..*a
            } == PgdConfig {
                iterations: 0,
                ..*b
            }
        }
        (Attack::Apgd(a), Attack::Apgd(b)) => {
            super::apgd::ApgdConfig {
                iterations: 1,
                ..*a
            } == super::apgd::ApgdConfig {
                iterations: 1,
                ..*b
            }
        }
        _ => false,
    }
}

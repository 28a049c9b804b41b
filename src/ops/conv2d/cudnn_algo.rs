//! Which cuDNN convolution algorithm to run: the first of cuDNN's heuristic list (it
//! comes ordered by expected speed) that
//!
//! - cuDNN reports as usable for this geometry (status success),
//! - is deterministic (the same bits every run: no float atomics across blocks),
//! - computes in plain f32 (not tensor-op math, i.e. no TF32),
//! - is not an FFT or Winograd algorithm, whose rounding differs from a direct
//!   convolution's by more than the tests' 1e-5 of f32 allow for, and
//! - needs at most [`WORKSPACE_LIMIT`] bytes of workspace.
//!
//! When none qualifies the caller runs the handwritten implicit-GEMM kernels instead,
//! and the reasons each candidate was passed over are kept for the report.

use std::fmt;

use cudarc::cudnn::sys::{
    cudnnConvolutionBwdDataAlgoPerf_t as DataPerf, cudnnConvolutionBwdDataAlgo_t as DataAlgo,
    cudnnConvolutionBwdFilterAlgoPerf_t as FilterPerf,
    cudnnConvolutionBwdFilterAlgo_t as FilterAlgo, cudnnConvolutionFwdAlgoPerf_t as FwdPerf,
    cudnnConvolutionFwdAlgo_t as FwdAlgo, cudnnDeterminism_t, cudnnMathType_t, cudnnStatus_t,
};

/// The most workspace one convolution may take (256 MiB).
pub(crate) const WORKSPACE_LIMIT: usize = 256 << 20;

/// One convolution algorithm of any of the three passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Algo {
    Forward(FwdAlgo),
    Data(DataAlgo),
    Filter(FilterAlgo),
}

impl Algo {
    /// Whether the algorithm rounds like a direct convolution (not FFT, not Winograd).
    fn rounds_like_direct(self) -> bool {
        !matches!(
            self,
            Algo::Forward(
                FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_FFT
                    | FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING
                    | FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD
                    | FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED
            ) | Algo::Data(
                DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT
                    | DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING
                    | DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD
                    | DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED
            ) | Algo::Filter(
                FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT
                    | FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING
                    | FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD
                    | FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED
            )
        )
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Algo::Forward(a) => format!("{a:?}"),
            Algo::Data(a) => format!("{a:?}"),
            Algo::Filter(a) => format!("{a:?}"),
        };
        f.write_str(name.trim_start_matches("CUDNN_CONVOLUTION_"))
    }
}

/// One entry of cuDNN's heuristic list, whatever the pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) algo: Algo,
    pub(crate) status: cudnnStatus_t,
    pub(crate) deterministic: bool,
    pub(crate) math: cudnnMathType_t,
    /// Workspace bytes cuDNN listed for it.
    pub(crate) workspace: usize,
}

macro_rules! candidate_from {
    ($perf:ty, $variant:ident) => {
        impl From<&$perf> for Candidate {
            fn from(p: &$perf) -> Self {
                Candidate {
                    algo: Algo::$variant(p.algo),
                    status: p.status,
                    deterministic: p.determinism == cudnnDeterminism_t::CUDNN_DETERMINISTIC,
                    math: p.mathType,
                    workspace: p.memory,
                }
            }
        }
    };
}
candidate_from!(FwdPerf, Forward);
candidate_from!(DataPerf, Data);
candidate_from!(FilterPerf, Filter);

impl Candidate {
    /// Why the candidate cannot be used, or `None` if it can.
    fn rejection(&self, workspace_limit: usize) -> Option<String> {
        if self.status != cudnnStatus_t::CUDNN_STATUS_SUCCESS {
            Some(format!("{:?}", self.status))
        } else if !self.deterministic {
            Some("not deterministic".into())
        } else if matches!(
            self.math,
            cudnnMathType_t::CUDNN_TENSOR_OP_MATH
                | cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
        ) {
            Some(format!("{:?}", self.math))
        } else if !self.algo.rounds_like_direct() {
            Some("FFT/Winograd rounding".into())
        } else if self.workspace > workspace_limit {
            Some(format!(
                "workspace {} B > {workspace_limit} B",
                self.workspace
            ))
        } else {
            None
        }
    }
}

/// The outcome of [`choose`]: the algorithm (if any) and every candidate passed over.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Choice {
    pub(crate) chosen: Option<Candidate>,
    /// Candidates before the chosen one (or all, if none), with the reason.
    pub(crate) passed_over: Vec<(Algo, String)>,
    /// How many candidates cuDNN listed.
    pub(crate) listed: usize,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.chosen {
            Some(c) => write!(
                f,
                "{} ({} B workspace; {} of {} listed)",
                c.algo,
                c.workspace,
                self.passed_over.len() + 1,
                self.listed
            )?,
            None => write!(f, "none of {} listed", self.listed)?,
        }
        for (algo, why) in &self.passed_over {
            write!(f, "; not {algo}: {why}")?;
        }
        Ok(())
    }
}

/// The first usable candidate of `list` (in cuDNN's order), per the module docs.
pub(crate) fn choose(list: &[Candidate], workspace_limit: usize) -> Choice {
    let mut passed_over = Vec::new();
    for c in list {
        match c.rejection(workspace_limit) {
            None => {
                return Choice {
                    chosen: Some(*c),
                    passed_over,
                    listed: list.len(),
                }
            }
            Some(why) => passed_over.push((c.algo, why)),
        }
    }
    Choice {
        chosen: None,
        passed_over,
        listed: list.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usable(algo: Algo, workspace: usize) -> Candidate {
        Candidate {
            algo,
            status: cudnnStatus_t::CUDNN_STATUS_SUCCESS,
            deterministic: true,
            math: cudnnMathType_t::CUDNN_FMA_MATH,
            workspace,
        }
    }

    const PRECOMP: Algo = Algo::Forward(FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
    const GEMM: Algo = Algo::Forward(FwdAlgo::CUDNN_CONVOLUTION_FWD_ALGO_GEMM);

    #[test]
    fn takes_the_first_usable_entry_in_cudnn_order() {
        let list = [usable(PRECOMP, 0), usable(GEMM, 0)];
        let choice = choose(&list, WORKSPACE_LIMIT);
        assert_eq!(choice.chosen, Some(list[0]));
        assert!(choice.passed_over.is_empty());
        assert_eq!(
            choice.to_string(),
            "FWD_ALGO_IMPLICIT_PRECOMP_GEMM (0 B workspace; 1 of 2 listed)"
        );
    }

    #[test]
    fn passes_over_failed_nondeterministic_tensor_op_inexact_and_large_entries() {
        let data0 = Algo::Data(DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
        let data1 = Algo::Data(DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1);
        let winograd = Algo::Data(DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD);
        let fft = Algo::Data(DataAlgo::CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING);
        let list = [
            Candidate {
                status: cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED,
                ..usable(data1, 0)
            },
            Candidate {
                deterministic: false,
                ..usable(data0, 0)
            },
            Candidate {
                math: cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
                ..usable(data1, 0)
            },
            usable(winograd, 0),
            usable(fft, 1024),
            usable(data1, WORKSPACE_LIMIT + 1),
            usable(data1, 64),
        ];
        let choice = choose(&list, WORKSPACE_LIMIT);
        assert_eq!(choice.chosen, Some(list[6]));
        let reasons: Vec<&str> = choice.passed_over.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "CUDNN_STATUS_NOT_SUPPORTED",
                "not deterministic",
                "CUDNN_TENSOR_OP_MATH",
                "FFT/Winograd rounding",
                "FFT/Winograd rounding",
                "workspace 268435457 B > 268435456 B",
            ]
        );
    }

    #[test]
    fn none_usable_is_no_choice_with_every_reason() {
        let filter3 = Algo::Filter(FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3);
        let list = [Candidate {
            deterministic: false,
            ..usable(filter3, 0)
        }];
        let choice = choose(&list, WORKSPACE_LIMIT);
        assert_eq!(choice.chosen, None);
        assert_eq!(
            choice.to_string(),
            "none of 1 listed; not BWD_FILTER_ALGO_3: not deterministic"
        );
        assert_eq!(choose(&[], WORKSPACE_LIMIT).chosen, None);
    }

    #[test]
    fn perf_structs_become_candidates() {
        // SAFETY: an all-zero perf struct is valid: every enum field has a 0 variant.
        let mut p: FilterPerf = unsafe { std::mem::zeroed() };
        p.algo = FilterAlgo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
        p.memory = 4096;
        p.determinism = cudnnDeterminism_t::CUDNN_DETERMINISTIC;
        p.mathType = cudnnMathType_t::CUDNN_DEFAULT_MATH;
        let c = Candidate::from(&p);
        assert_eq!(c, usable(Algo::Filter(p.algo), 4096).with_math(p.mathType));
        assert!(c.rejection(WORKSPACE_LIMIT).is_none());
    }

    impl Candidate {
        fn with_math(self, math: cudnnMathType_t) -> Self {
            Candidate { math, ..self }
        }
    }
}

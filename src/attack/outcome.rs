//! What an attack on one batch produced, whichever attack it was: the images, which
//! ones it broke, its loss along the way and the model queries it spent.

/// The result of an attack ([`super::apgd::apgd`], [`super::square::square`]) on a
/// batch of `n` images.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackOutcome {
    /// The attacked images, NCHW, within ε of the clean ones and in [0, 1]: for a
    /// broken image one the model misclassifies, for the others the best point the
    /// attack found (highest loss).
    pub adversarial: Vec<f32>,
    /// Per image: misclassified as it is, or at some point the attack evaluated. With
    /// restarts or several targets, an image is broken when any run broke it.
    pub broken: Vec<bool>,
    /// `losses[k][j]`: the attack's loss for image `curve_images[j]` after `k` steps
    /// (queries, for a gradient-free attack) of its first run; an image that breaks
    /// leaves the run and keeps its last loss.
    pub losses: Vec<Vec<f32>>,
    /// The images of the first run: those the model classified correctly.
    pub curve_images: Vec<usize>,
    /// Per image: the model evaluations the attack spent on it (the clean image not
    /// counted).
    pub queries: Vec<usize>,
}

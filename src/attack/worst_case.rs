//! The worst case over attacks, image by image: an image counts as broken when the
//! clean image or any attack (any of its restarts, targets or iterates, as each attack
//! reports) misclassifies it. Its error is at least every single attack's error, and
//! above their maximum wherever the attacks break different images.

use crate::error::{check_len, Result};

/// Per image: misclassified clean (`clean_wrong`) or broken by any of `attacks` (each a
/// flag per image, in the same order).
pub fn worst_case(clean_wrong: &[bool], attacks: &[&[bool]]) -> Result<Vec<bool>> {
    let mut worst = clean_wrong.to_vec();
    for broken in attacks {
        check_len("worst case", "attack's images", broken.len(), worst.len())?;
        for (w, &b) in worst.iter_mut().zip(*broken) {
            *w |= b;
        }
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two attacks that break different images: the worst case is their union, above
    /// either error; the clean errors count too. Fails when the flags are combined with
    /// `&` or only the strongest attack is kept (checked with `&`).
    #[test]
    fn an_image_broken_by_any_attack_counts() {
        let clean = [true, false, false, false, false];
        let a = [true, true, false, false, false];
        let b = [false, false, true, false, false];
        let worst = worst_case(&clean, &[&a, &b]).unwrap();
        assert_eq!(worst, [true, true, true, false, false]);
        assert_eq!(worst_case(&clean, &[]).unwrap(), clean);
        assert!(worst_case(&clean, &[&a[..4]]).is_err());
    }
}

//! PLACEHOLDER (replaced by the Landlock and seccomp implementation).

use super::{WallError, WallPlan, WallReport};

pub(super) fn probe(plan: &WallPlan) -> WallReport {
    WallReport::down(plan.mode, "not built yet")
}

pub(super) fn apply(plan: &WallPlan) -> Result<WallReport, WallError> {
    Ok(WallReport::down(plan.mode, "not built yet"))
}

//! The guest's environment variables: exactly the policy's.

use crate::policy::Policy;
use wasmtime_wasi::WasiCtxBuilder;

pub(super) fn add_env(builder: &mut WasiCtxBuilder, policy: &Policy) {
    builder.envs(&policy.guest_env());
}

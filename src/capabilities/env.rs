//! The guest's environment: exactly the policy's variables, and its initial
//! working directory (`wasi:cli/environment.initial-cwd`; preview 1 has no
//! such call, and reads it from `PWD`, which the policy sets with it).

use crate::policy::Policy;
use wasmtime_wasi::WasiCtxBuilder;

pub(super) fn add_env(builder: &mut WasiCtxBuilder, policy: &Policy) {
    builder.envs(&policy.guest_env());
    if let Some(cwd) = policy.cwd() {
        builder.initial_cwd(cwd);
    }
}

//! The guest's environment: exactly the policy's variables, and its initial
//! working directory (`wasi:cli/environment.initial-cwd`; preview 1 has no
//! such call, and reads it from `PWD`, which the policy sets with it).

use super::broker::Broker;
use crate::policy::Policy;
use wasmtime_wasi::WasiCtxBuilder;

/// The policy's environment, each `${placeholder.NAME}` in `env.vars` given
/// as the run's placeholder for that secret (never the value).
pub(super) fn add_env(builder: &mut WasiCtxBuilder, policy: &Policy, broker: &Broker) {
    let vars = policy.env_vars();
    let env: Vec<(String, String)> = policy
        .guest_env()
        .into_iter()
        .map(|(name, value)| {
            // Only the policy's own values: an inherited host value is the host's text.
            let value = match vars.get(&name) {
                Some(written) if *written == value => broker.guest_value(&value),
                _ => value,
            };
            (name, value)
        })
        .collect();
    builder.envs(&env);
    if let Some(cwd) = policy.cwd() {
        builder.initial_cwd(cwd);
    }
}

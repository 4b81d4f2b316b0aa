//! The flags of the policy settings the library declares
//! ([`wasmcell::policy::SETTINGS`]), made with clap's builder API from that
//! table, so that a setting declared there is a flag here with no field of
//! its own. The library checks each value, as it checks a file's.

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use wasmcell::policy::{Flag, Origin, PolicyBuilder, PolicyError, SETTINGS, SettingInfo};

/// The setting flags given, in the order of [`SETTINGS`], with their text.
#[derive(Debug, Clone, Default)]
pub struct SettingFlags {
    given: Vec<(&'static SettingInfo, Flag, String)>,
}

impl SettingFlags {
    /// `policy` with each given flag's value set, marked with its flag.
    ///
    /// # Errors
    ///
    /// What [`PolicyBuilder::set_setting`] refuses.
    pub fn apply(&self, mut policy: PolicyBuilder) -> Result<PolicyBuilder, PolicyError> {
        for (setting, flag, text) in &self.given {
            policy = policy.set_setting(setting.key, text, Origin::Flag(flag.name))?;
        }
        Ok(policy)
    }
}

fn flagged() -> impl Iterator<Item = (&'static SettingInfo, Flag)> {
    SETTINGS.iter().filter_map(|s| s.flag.map(|f| (s, f)))
}

impl Args for SettingFlags {
    fn augment_args(cmd: Command) -> Command {
        flagged().fold(cmd, |cmd, (setting, flag)| {
            let help = setting.flag_help().unwrap_or_default();
            let mut arg = Arg::new(setting.key)
                .long(flag.name.trim_start_matches("--"))
                .value_name(flag.value_name)
                .help(help.clone())
                // Text that is no value of the kind is a usage error now;
                // bounds are the library's to check.
                .value_parser(move |text: &str| setting.parse_text(text).map(|()| text.to_string()));
            if !flag.long_help.is_empty() {
                arg = arg.long_help(format!("{help}\n\n{}", flag.long_help));
            }
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = flagged()
            .filter_map(|(setting, flag)| {
                let text = matches.get_one::<String>(setting.key)?;
                Some((setting, flag, text.clone()))
            })
            .collect();
        Ok(SettingFlags { given })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

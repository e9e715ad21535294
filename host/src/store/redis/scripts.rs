//! The Lua scripts of the Redis store. Every change that touches more than one key is
//! a script, so no other process ever sees half of it.
//!
//! Each script is loaded as three parts: a preamble defining the key prefixes and the
//! invalidation channel as Lua `local`s, generated from the consts of `wire.rs`
//! ([`wire::SCRIPT_NAMES`]), so the names are spelled once for Rust and Lua alike;
//! `lua/common.lua`, the helpers every script shares; and the script's own file.

use super::keys::Keys;
use crate::wire;
use redis::Script;

/// The helpers every script starts with (after the preamble).
const COMMON: &str = include_str!("../lua/common.lua");

/// Every script, loaded once per store (redis-rs sends a script's body only when Redis
/// does not know its hash yet).
pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) reload: Script,
    pub(super) take: Script,
    pub(super) start: Script,
    pub(super) heartbeat: Script,
    pub(super) finish: Script,
    pub(super) hand_back: Script,
    pub(super) orphans: Script,
    pub(super) requeue: Script,
}

impl Scripts {
    /// The scripts for the key space `keys`.
    pub(super) fn new(keys: Keys) -> Scripts {
        let preamble = preamble(keys);
        let load = |body: &str| Script::new(&format!("{preamble}{COMMON}\n{body}"));
        Scripts {
            enqueue: load(include_str!("../lua/enqueue.lua")),
            reload: load(include_str!("../lua/reload.lua")),
            take: load(include_str!("../lua/take.lua")),
            start: load(include_str!("../lua/start.lua")),
            heartbeat: load(include_str!("../lua/heartbeat.lua")),
            finish: load(include_str!("../lua/finish.lua")),
            hand_back: load(include_str!("../lua/hand_back.lua")),
            orphans: load(include_str!("../lua/orphans.lua")),
            requeue: load(include_str!("../lua/requeue.lua")),
        }
    }
}

/// `local NAME = "value"`, one line per name of [`wire::SCRIPT_NAMES`], each key
/// prefix in the key space `keys` (channels are not keys: they keep their names).
fn preamble(keys: Keys) -> String {
    let mut out = String::from("-- Generated from src/wire.rs by store/redis/scripts.rs.\n");
    for (name, value) in wire::SCRIPT_NAMES {
        let value = if name.ends_with("_PREFIX") {
            keys.of(value)
        } else {
            value.into()
        };
        out.push_str(&format!("local {name} = {}\n", lua_string(&value)));
    }
    out
}

/// `s` as a Lua string literal: printable ASCII as it is (but `"` and `\`), every
/// other byte as a decimal escape, which Lua reads back as that very byte.
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script's source, comments removed (`--` to the end of a line; no script
    /// has `--` inside a string).
    fn code() -> Vec<(&'static str, String)> {
        let sources = [
            ("common", COMMON),
            ("enqueue", include_str!("../lua/enqueue.lua")),
            ("reload", include_str!("../lua/reload.lua")),
            ("take", include_str!("../lua/take.lua")),
            ("start", include_str!("../lua/start.lua")),
            ("heartbeat", include_str!("../lua/heartbeat.lua")),
            ("finish", include_str!("../lua/finish.lua")),
            ("hand_back", include_str!("../lua/hand_back.lua")),
            ("orphans", include_str!("../lua/orphans.lua")),
            ("requeue", include_str!("../lua/requeue.lua")),
        ];
        sources
            .into_iter()
            .map(|(name, source)| {
                let code = source
                    .lines()
                    .map(|l| l.split_once("--").map_or(l, |(code, _)| code))
                    .collect::<Vec<_>>()
                    .join("\n");
                (name, code)
            })
            .collect()
    }

    #[test]
    fn the_preamble_defines_each_key_name_of_wire_rs() {
        let preamble = preamble(Keys::PLAIN);
        for (name, value) in [
            ("ENTRY_PREFIX", wire::ENTRY_PREFIX),
            ("ERROR_PREFIX", wire::ERROR_PREFIX),
            ("MARKER_PREFIX", wire::MARKER_PREFIX),
            ("LEASE_PREFIX", wire::LEASE_PREFIX),
            ("ATTEMPTS_PREFIX", wire::ATTEMPTS_PREFIX),
            ("RUN_PREFIX", wire::RUN_PREFIX),
            ("HISTORY_PREFIX", wire::HISTORY_PREFIX),
            ("RELOAD_PREFIX", wire::RELOAD_PREFIX),
            ("RETRY_PREFIX", wire::RETRY_PREFIX),
            ("INVALIDATE_CHANNEL", wire::INVALIDATE_CHANNEL),
        ] {
            let line = format!("local {name} = \"{value}\"\n");
            assert!(preamble.contains(&line), "{line:?} missing from {preamble}");
        }
    }

    #[test]
    fn on_a_cluster_every_key_prefix_carries_the_hash_tag_and_channels_do_not() {
        let preamble = preamble(Keys::CLUSTER);
        assert!(preamble.contains("local ENTRY_PREFIX = \"{httpsd}\"\n"));
        assert!(preamble.contains("local MARKER_PREFIX = \"{httpsd}httpsd:job:\"\n"));
        let channel = format!(
            "local INVALIDATE_CHANNEL = \"{}\"\n",
            wire::INVALIDATE_CHANNEL
        );
        assert!(preamble.contains(&channel));
    }

    #[test]
    fn the_scripts_spell_no_key_name_of_their_own() {
        let spelled = [wire::PREFIX, wire::ERROR_PREFIX, wire::QUEUE];
        for (script, code) in code() {
            for name in spelled {
                assert!(
                    !code.contains(&format!("'{name}")) && !code.contains(&format!("\"{name}")),
                    "{script}.lua spells {name:?}: use the names of wire::SCRIPT_NAMES"
                );
            }
        }
    }

    #[test]
    fn every_name_the_scripts_use_is_defined_and_every_defined_name_used() {
        let defined: Vec<&str> = wire::SCRIPT_NAMES.iter().map(|(n, _)| *n).collect();
        let mut used = Vec::new();
        for (script, code) in code() {
            let words = code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            for word in words.filter(|w| w.ends_with("_PREFIX") || w.ends_with("_CHANNEL")) {
                assert!(
                    defined.contains(&word),
                    "{script}.lua uses {word}, which wire::SCRIPT_NAMES does not define"
                );
                used.push(word.to_string());
            }
        }
        for name in defined {
            assert!(used.iter().any(|u| u == name), "no script uses {name}");
        }
    }

    #[test]
    fn lua_strings_read_back_as_the_same_bytes() {
        assert_eq!(lua_string("httpsd:job:"), "\"httpsd:job:\"");
        assert_eq!(
            lua_string("a\"b\\c\nd\u{e9}"),
            "\"a\\\"b\\\\c\\010d\\195\\169\""
        );
    }
}

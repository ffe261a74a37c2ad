//! Triggers: what starts a pipeline's executions, besides a manual run.
//! A `webhook` trigger runs it when its secret URL is called, a `schedule`
//! trigger on a cron schedule in an IANA timezone, and a `manual` trigger
//! is a named record of the manual run endpoint. Definitions are checked
//! whole when they are written (the cron parses, the timezone exists, the
//! schedule fires at all), so a stored trigger never fails for being
//! malformed.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::keys;

/// The longest trigger name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// How many upcoming fire times a schedule trigger shows.
pub const NEXT_FIRES: usize = 5;
/// Every webhook token starts with this, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "whk_";
/// Random bytes in a webhook token.
pub const TOKEN_BYTES: usize = keys::TOKEN_BYTES;

/// What starts a trigger's executions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Webhook,
    Schedule,
    Manual,
}

impl TriggerKind {
    /// The kind as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Webhook => "webhook",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Manual => "manual",
        }
    }
}

/// What a client writes: `{"type", "name", "config"}`.
#[derive(Clone, Debug, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    #[serde(rename = "type")]
    pub kind: TriggerKind,
    pub name: String,
    /// `{"cron", "timezone"}` for a schedule; empty (or absent) otherwise.
    #[serde(default)]
    pub config: Map<String, Value>,
}

/// Why a trigger definition was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("`name` must be 1 to {MAX_NAME_CHARS} characters")]
    Name,
    #[error("invalid `config`: {0}")]
    Config(String),
    #[error("invalid `config.cron` `{cron}`: {reason}")]
    Cron { cron: String, reason: String },
    #[error(
        "unknown `config.timezone` `{0}`: an IANA timezone name is expected, e.g. `Europe/Berlin` or `UTC`"
    )]
    Timezone(String),
}

impl TriggerError {
    /// The API error code of this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            TriggerError::Name | TriggerError::Config(_) => "invalid_trigger",
            TriggerError::Cron { .. } => "invalid_cron",
            TriggerError::Timezone(_) => "invalid_timezone",
        }
    }
}

impl TriggerSpec {
    /// The schedule of a schedule trigger (`None` for the other kinds), once
    /// the whole definition is known to be valid.
    pub fn check(
        &self,
        now: DateTime<Utc>,
        min_interval: chrono::Duration,
    ) -> Result<Option<Schedule>, TriggerError> {
        let chars = self.name.trim().chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(TriggerError::Name);
        }
        match self.kind {
            TriggerKind::Schedule => {
                Schedule::from_config(&self.config, now, min_interval).map(Some)
            }
            kind => match self.config.keys().next() {
                None => Ok(None),
                Some(field) => Err(TriggerError::Config(format!(
                    "a {} trigger takes no configuration; unknown field `{field}`",
                    kind.as_str()
                ))),
            },
        }
    }
}

/// Fire times sampled to find a schedule's shortest interval: the first
/// 100, or those of the next two years when fewer.
pub const INTERVAL_SAMPLE: usize = 100;
const INTERVAL_HORIZON: chrono::Duration = chrono::Duration::days(2 * 366);

/// A cron schedule in a timezone: 5 fields (minute hour day month weekday)
/// or 6 with leading seconds, evaluated on the zone's wall clock. Across
/// daylight-saving changes it follows the Open Cron Pattern Specification
/// (as croner implements it): a fixed time that a spring-forward skips
/// fires at the first instant after the gap, a fixed time that a fall-back
/// repeats fires once (the earlier instant), and interval patterns fire on
/// the real instants they match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub cron: String,
    #[serde(default = "utc")]
    pub timezone: String,
}

fn utc() -> String {
    "UTC".into()
}

impl Schedule {
    /// Read and check a schedule trigger's `config`: it must fire after
    /// `now`, and never twice within `min_interval` (judged on its next
    /// [`INTERVAL_SAMPLE`] fire times, which cover every pattern that
    /// repeats within an hour or a day).
    pub fn from_config(
        config: &Map<String, Value>,
        now: DateTime<Utc>,
        min_interval: chrono::Duration,
    ) -> Result<Schedule, TriggerError> {
        let schedule: Schedule = serde_json::from_value(Value::Object(config.clone()))
            .map_err(|e| TriggerError::Config(e.to_string()))?;
        schedule.compile()?;
        let fires = schedule.fires(now, INTERVAL_SAMPLE, Some(now + INTERVAL_HORIZON));
        if fires.is_empty() {
            return Err(TriggerError::Cron {
                cron: schedule.cron.clone(),
                reason: "it never fires".into(),
            });
        }
        if let Some(gap) = fires.windows(2).map(|w| w[1] - w[0]).min()
            && gap < min_interval
        {
            return Err(TriggerError::Cron {
                cron: schedule.cron.clone(),
                reason: format!(
                    "it fires {} s apart; the minimum interval is {} s",
                    gap.num_seconds(),
                    min_interval.num_seconds()
                ),
            });
        }
        Ok(schedule)
    }

    fn compile(&self) -> Result<(Cron, TimeZone), TriggerError> {
        let fields = self.cron.split_whitespace().count();
        // Nicknames (`@hourly`, ...) are one field; a 7th field (years) is refused.
        if !(self.cron.trim_start().starts_with('@') || fields == 5 || fields == 6) {
            return Err(TriggerError::Cron {
                cron: self.cron.clone(),
                reason: format!(
                    "5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds expected, got {fields}"
                ),
            });
        }
        // croner reads an empty list item (`,`, `1,,2`) as "matches nothing"
        // and then searches for a fire time until the year 5000.
        if let Some(field) = self
            .cron
            .split_whitespace()
            .find(|f| f.split(',').any(str::is_empty))
        {
            return Err(TriggerError::Cron {
                cron: self.cron.clone(),
                reason: format!("the field `{field}` has an empty list item"),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(&self.cron)
            .map_err(|e| TriggerError::Cron {
                cron: self.cron.clone(),
                reason: e.to_string(),
            })?;
        let tz = TimeZone::get(&self.timezone)
            .map_err(|_| TriggerError::Timezone(self.timezone.clone()))?;
        Ok((cron, tz))
    }

    /// The first fire time strictly after `t`, if the schedule ever fires again.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_fires(t, 1).pop()
    }

    /// The next `n` fire times strictly after `t`. Cron slots are whole
    /// seconds, so `t` counts from its second: a slot at `t`'s second is not after it.
    pub fn next_fires(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.fires(t, n, None)
    }

    /// Up to `n` fire times strictly after `t`, none after `until`.
    fn fires(
        &self,
        t: DateTime<Utc>,
        n: usize,
        until: Option<DateTime<Utc>>,
    ) -> Vec<DateTime<Utc>> {
        let Ok((cron, tz)) = self.compile() else {
            return Vec::new();
        };
        let Ok(start) = jiff::Timestamp::from_second(t.timestamp()) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(n.min(1000));
        let mut at = start.to_zoned(tz);
        while out.len() < n {
            let Ok(next) = cron.find_next_occurrence(&at, false) else {
                break;
            };
            let stamp = next.timestamp();
            match DateTime::from_timestamp(stamp.as_second(), stamp.subsec_nanosecond() as u32) {
                Some(utc) if until.is_none_or(|u| utc <= u) => {
                    out.push(utc);
                    at = next;
                }
                _ => break,
            }
        }
        out
    }
}

/// A stored trigger. A webhook's token is never stored: only its SHA-256
/// (hex) and its last characters, to recognise it by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: Uuid,
    pub pipeline_id: Uuid,
    #[serde(rename = "type")]
    pub kind: TriggerKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_hint: Option<String>,
    /// A schedule's next slot: fired by the first scheduler tick at or
    /// after it, then advanced past that tick's now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<DateTime<Utc>>,
    /// Its pipeline's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Bumped by every write; the compare-and-set token.
    pub version: u64,
}

impl Trigger {
    /// The trigger `spec` defines, checked (a schedule fires at most once
    /// per `min_interval`); `token` is the new webhook token of a webhook
    /// trigger.
    pub fn new(
        id: Uuid,
        pipeline_id: Uuid,
        spec: TriggerSpec,
        token: Option<&str>,
        now: DateTime<Utc>,
        min_interval: chrono::Duration,
    ) -> Result<Trigger, TriggerError> {
        let schedule = spec.check(now, min_interval)?;
        let webhook = token.filter(|_| spec.kind == TriggerKind::Webhook);
        Ok(Trigger {
            id,
            pipeline_id,
            kind: spec.kind,
            name: spec.name.trim().to_string(),
            next_fire: schedule.as_ref().and_then(|s| s.next_after(now)),
            schedule,
            created_at: now,
            webhook_sha256: webhook.map(token_sha256),
            webhook_hint: webhook.map(keys::hint),
            user_id: None,
            version: 1,
        })
    }

    /// The configuration as the client wrote it (the timezone filled in).
    pub fn config(&self) -> Value {
        match &self.schedule {
            Some(s) => json!({ "cron": s.cron, "timezone": s.timezone }),
            None => json!({}),
        }
    }

    /// The next [`NEXT_FIRES`] fire times after `now` (empty unless a schedule).
    pub fn next_fires(&self, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        self.schedule
            .as_ref()
            .map_or_else(Vec::new, |s| s.next_fires(now, NEXT_FIRES))
    }

    /// The trigger after firing its slot at `now`: the next slot is the
    /// first one after `now`, so any slots missed meanwhile are skipped (the
    /// one firing late stands for them all).
    pub fn fired(&self, now: DateTime<Utc>) -> Trigger {
        let mut next = self.clone();
        next.next_fire = self.schedule.as_ref().and_then(|s| s.next_after(now));
        next.version += 1;
        next
    }
}

/// A new webhook token: [`TOKEN_PREFIX`] and [`TOKEN_BYTES`] random bytes, base64url.
pub fn new_token() -> String {
    keys::new_token(TOKEN_PREFIX)
}

/// Whether `s` is shaped like a token [`new_token`] makes (checked before
/// any lookup, so junk costs no read).
pub fn is_token_shaped(s: &str) -> bool {
    keys::is_token_shaped(TOKEN_PREFIX, s)
}

/// The hex SHA-256 of a token: what is stored and looked up.
pub fn token_sha256(token: &str) -> String {
    keys::sha256_hex(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const ANY: chrono::Duration = chrono::Duration::zero();

    fn schedule(cron: &str, timezone: &str) -> Schedule {
        let config = json!({ "cron": cron, "timezone": timezone });
        Schedule::from_config(config.as_object().unwrap(), Utc::now(), ANY).unwrap()
    }

    fn spec(value: Value) -> TriggerSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn five_fields_or_six_with_leading_seconds() {
        let every_minute = schedule("* * * * *", "UTC");
        assert_eq!(
            every_minute.next_fires(at("2026-03-01T12:00:30.250Z"), 2),
            vec![at("2026-03-01T12:01:00Z"), at("2026-03-01T12:02:00Z")]
        );
        let every_ten_seconds = schedule("*/10 * * * * *", "UTC");
        assert_eq!(
            every_ten_seconds.next_after(at("2026-03-01T12:00:00Z")),
            Some(at("2026-03-01T12:00:10Z")),
            "a slot at the very second is not after it"
        );
    }

    #[test]
    fn the_timezone_defaults_to_utc_and_shifts_the_wall_clock() {
        let config = json!({"cron": "0 9 * * 1-5"});
        let s = Schedule::from_config(config.as_object().unwrap(), Utc::now(), ANY).unwrap();
        assert_eq!(s.timezone, "UTC");
        // Sunday 1 March 2026 → Monday 09:00.
        assert_eq!(
            s.next_after(at("2026-03-01T12:00:00Z")),
            Some(at("2026-03-02T09:00:00Z"))
        );
        let tokyo = schedule("0 9 * * 1-5", "Asia/Tokyo");
        assert_eq!(
            tokyo.next_after(at("2026-03-01T12:00:00Z")),
            Some(at("2026-03-02T00:00:00Z"))
        );
    }

    #[test]
    fn a_skipped_time_fires_after_the_spring_forward_gap_and_a_repeated_one_once() {
        let s = schedule("30 2 * * *", "Europe/Berlin");
        // 29 March 2026: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        assert_eq!(
            s.next_fires(at("2026-03-27T12:00:00Z"), 3),
            vec![
                at("2026-03-28T01:30:00Z"), // 02:30 CET
                at("2026-03-29T01:00:00Z"), // 03:00 CEST, the first instant after the gap
                at("2026-03-30T00:30:00Z"), // 02:30 CEST
            ]
        );
        // 25 October 2026: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        assert_eq!(
            s.next_fires(at("2026-10-24T12:00:00Z"), 3),
            vec![
                at("2026-10-25T00:30:00Z"), // 02:30 CEST, the earlier of the two
                at("2026-10-26T01:30:00Z"), // 02:30 CET, next day
                at("2026-10-27T01:30:00Z"),
            ]
        );
    }

    #[test]
    fn bad_crons_and_timezones_are_refused_with_their_reason() {
        for (config, code) in [
            (json!({"cron": "61 * * * *"}), "invalid_cron"),
            (json!({"cron": "* * *"}), "invalid_cron"),
            (json!({"cron": "0 0 * * * * 2030"}), "invalid_cron"),
            (json!({"cron": "0 0 30 2 *"}), "invalid_cron"),
            (json!({"cron": ", * * * * *"}), "invalid_cron"),
            (json!({"cron": "1,, * * * *"}), "invalid_cron"),
            (
                json!({"cron": "* * * * *", "timezone": "Mars/Olympus"}),
                "invalid_timezone",
            ),
            (json!({"cron": "* * * * *", "every": 5}), "invalid_trigger"),
            (json!({"timezone": "UTC"}), "invalid_trigger"),
        ] {
            let err =
                Schedule::from_config(config.as_object().unwrap(), Utc::now(), ANY).unwrap_err();
            assert_eq!(err.code(), code, "{config}: {err}");
        }
        let feb_30 = json!({"cron": "0 0 30 2 *"});
        let err = Schedule::from_config(feb_30.as_object().unwrap(), Utc::now(), ANY).unwrap_err();
        assert!(err.to_string().contains("never fires"), "{err}");
    }

    #[test]
    fn a_schedule_firing_closer_than_the_minimum_interval_is_refused() {
        let minute = chrono::Duration::seconds(60);
        let check = |cron: &str| {
            let config = json!({ "cron": cron });
            Schedule::from_config(config.as_object().unwrap(), Utc::now(), minute)
        };
        for too_often in [
            "* * * * * *",
            "*/30 * * * * *",
            "0,1 0 0 * * *",
            "0,59 * * * * *",
        ] {
            let err = check(too_often).unwrap_err();
            assert_eq!(err.code(), "invalid_cron", "{too_often}");
            assert!(
                err.to_string().contains("minimum interval is 60 s"),
                "{err}"
            );
        }
        for fine in ["* * * * *", "0 * * * * *", "0 9 * * 1-5", "@hourly"] {
            assert!(check(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn only_schedules_take_a_config_and_names_are_bounded() {
        let webhook = spec(json!({"type": "webhook", "name": "hook"}));
        let now = Utc::now();
        assert_eq!(webhook.check(now, ANY), Ok(None));
        let extra = spec(json!({"type": "manual", "name": "m", "config": {"cron": "* * * * *"}}));
        assert_eq!(extra.check(now, ANY).unwrap_err().code(), "invalid_trigger");
        let blank = spec(json!({"type": "webhook", "name": "  "}));
        assert_eq!(blank.check(now, ANY), Err(TriggerError::Name));
        let long = spec(json!({"type": "webhook", "name": "x".repeat(MAX_NAME_CHARS + 1)}));
        assert_eq!(long.check(now, ANY), Err(TriggerError::Name));
        assert!(
            serde_json::from_value::<TriggerSpec>(json!({"type": "cronjob", "name": "x"})).is_err()
        );
        assert!(
            serde_json::from_value::<TriggerSpec>(
                json!({"type": "webhook", "name": "x", "url": 1})
            )
            .is_err()
        );
    }

    #[test]
    fn a_webhook_stores_only_the_hash_and_hint_of_its_token() {
        let token = new_token();
        assert!(is_token_shaped(&token), "{token}");
        assert_ne!(token, new_token());
        assert!(!is_token_shaped("whk_short"));
        assert!(!is_token_shaped(&token.replace("whk_", "tok_")));
        let t = Trigger::new(
            Uuid::now_v7(),
            Uuid::now_v7(),
            spec(json!({"type": "webhook", "name": "hook"})),
            Some(&token),
            at("2026-03-01T12:00:00Z"),
            ANY,
        )
        .unwrap();
        assert_eq!(
            t.webhook_sha256.as_deref(),
            Some(token_sha256(&token).as_str())
        );
        assert_eq!(t.webhook_sha256.as_ref().map(String::len), Some(64));
        assert_eq!(
            t.webhook_hint,
            Some(format!("...{}", &token[token.len() - 4..]))
        );
        let stored = serde_json::to_string(&t).unwrap();
        assert!(
            !stored.contains(&token[4..]),
            "the token itself is never stored"
        );
        assert_eq!((t.next_fire, t.config()), (None, json!({})));
    }

    #[test]
    fn firing_late_skips_to_the_first_slot_after_now() {
        let t = Trigger::new(
            Uuid::now_v7(),
            Uuid::now_v7(),
            spec(json!({"type": "schedule", "name": "hourly", "config": {"cron": "0 * * * *"}})),
            None,
            at("2026-03-01T12:10:00Z"),
            ANY,
        )
        .unwrap();
        assert_eq!(t.next_fire, Some(at("2026-03-01T13:00:00Z")));
        let late = t.fired(at("2026-03-01T16:20:00Z"));
        assert_eq!(late.next_fire, Some(at("2026-03-01T17:00:00Z")));
        assert_eq!(late.version, t.version + 1);
        assert_eq!(t.config(), json!({"cron": "0 * * * *", "timezone": "UTC"}));
        assert_eq!(t.next_fires(at("2026-03-01T12:10:00Z")).len(), NEXT_FIRES);
    }
}

//! The alarm list (`NOSPACE`, `CORRUPT`), replicated and persisted under `a/`.

use std::collections::BTreeSet;

use shale_api::etcdserverpb::{AlarmMember, AlarmType};

pub const ALARM_PREFIX: &[u8] = b"a/";

pub fn alarm_key(member: u64, alarm: i32) -> Vec<u8> {
    let mut k = ALARM_PREFIX.to_vec();
    k.extend_from_slice(&member.to_be_bytes());
    k.extend_from_slice(&alarm.to_be_bytes());
    k
}

pub fn parse_alarm_key(k: &[u8]) -> Option<(u64, i32)> {
    let rest = k.strip_prefix(ALARM_PREFIX)?;
    if rest.len() != 12 {
        return None;
    }
    let m = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let a = i32::from_be_bytes(rest[8..].try_into().ok()?);
    Some((m, a))
}

/// Raised alarms as (member id, alarm type).
#[derive(Debug, Default, Clone)]
pub struct Alarms {
    set: BTreeSet<(u64, i32)>,
}

impl Alarms {
    pub fn insert(&mut self, member: u64, alarm: i32) -> bool {
        self.set.insert((member, alarm))
    }

    pub fn remove(&mut self, member: u64, alarm: i32) -> bool {
        self.set.remove(&(member, alarm))
    }

    /// Alarms of one type, or all for `NONE`.
    pub fn list(&self, alarm: i32) -> Vec<AlarmMember> {
        self.set
            .iter()
            .filter(|(_, a)| alarm == AlarmType::None as i32 || *a == alarm)
            .map(|(m, a)| AlarmMember {
                member_id: *m,
                alarm: *a,
            })
            .collect()
    }

    pub fn has(&self, alarm: AlarmType) -> bool {
        self.set.iter().any(|(_, a)| *a == alarm as i32)
    }
}

//! The etcd KV model of one key: operations ([`KvInput`], [`KvOutput`]) and the sequential
//! specification the search checks them against ([`KeyModel`]).
//!
//! A key's state is its value (absent or one value), the mod_revision of that value, and the
//! *floor*: the highest revision known to have been written to this key so far. etcd's
//! revisions are global, so per key we can only check what one key implies:
//!
//! * a write that answered a revision `r` (Put, a successful CAS, a Delete that deleted the
//!   key) needs `r > floor`, and then `floor = r` and the value's mod_revision is `r`;
//! * a write whose revision is unknown (its answer had none, or it never answered) leaves the
//!   mod_revision *unknown*: it is some number above the floor, and the first Get that reports
//!   it (or a CAS on mod_revision that succeeded) binds it; a CAS on mod_revision `R` that
//!   failed excludes `R`. A CAS on `R` whose outcome is unknown splits the search in two;
//! * an absent key has mod_revision 0 (etcd's compare semantics).
//!
//! With an unknown outcome (the op never returned) `step` returns only outcomes that change
//! something: an op that never returned may stay unlinearized forever, which is always at
//! least as permissive as linearizing it as a no-op (steps are monotone: fewer exclusions on
//! an unknown revision never forbid a later step).
//!
//! Gets must return the current value (and its mod_revision when it is reported); Delete
//! answers 1 when the key existed, 0 otherwise; CAS (`Txn` with one compare on value or
//! mod_revision, and a Put in its success branch) succeeds exactly when its compare holds.
//! Values are interned to small integers per key partition, so states are cheap to hash.
//! A written value that no operation observes (no Get returned it, no CAS compared with it)
//! is interned as the one anonymous value [`ANON`]: such writes differ in nothing the model
//! can see, and making them equal lets the search treat failed ones as interchangeable.

use std::collections::HashMap;

use super::search::Model;

/// What a CAS compares.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expect {
    /// The key's value equals this one (`None`: the key does not exist).
    Value(Option<Vec<u8>>),
    /// The key's mod_revision equals this one (0: the key does not exist).
    ModRevision(i64),
}

/// A KV request on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvInput {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// `Txn(compare on key) then Put(key, value)`.
    Cas {
        key: Vec<u8>,
        expect: Expect,
        value: Vec<u8>,
    },
}

impl KvInput {
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        Self::Get { key: key.into() }
    }
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::Put {
            key: key.into(),
            value: value.into(),
        }
    }
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Self::Delete { key: key.into() }
    }
    pub fn cas(key: impl Into<Vec<u8>>, expect: Expect, value: impl Into<Vec<u8>>) -> Self {
        Self::Cas {
            key: key.into(),
            expect,
            value: value.into(),
        }
    }

    pub fn key(&self) -> &[u8] {
        match self {
            Self::Get { key } | Self::Put { key, .. } | Self::Delete { key } => key,
            Self::Cas { key, .. } => key,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, Self::Get { .. })
    }
}

/// The answer to a [`KvInput`] (of the same kind; a mismatched kind is illegal).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    Get {
        value: Option<Vec<u8>>,
        /// The kv's mod_revision, when the client kept it.
        mod_revision: Option<i64>,
    },
    Put {
        /// Header revision of the response (= the new mod_revision), when kept.
        revision: Option<i64>,
    },
    Delete {
        deleted: i64,
        /// Header revision (only meaningful when `deleted == 1`).
        revision: Option<i64>,
    },
    Cas {
        succeeded: bool,
        /// Header revision (only used when `succeeded`).
        revision: Option<i64>,
    },
}

/// Interned value: index into the partition's value table.
pub(crate) type Val = u32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CExpect {
    Value(Option<Val>),
    ModRevision(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CIn {
    Get,
    Put(Val),
    Delete,
    Cas(CExpect, Val),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum COut {
    Get(Option<Val>, Option<i64>),
    Put(Option<i64>),
    Delete(i64, Option<i64>),
    Cas(bool, Option<i64>),
}

/// The id of every written value that no operation observes.
pub(crate) const ANON: Val = 0;

/// Value interner of one partition.
#[derive(Debug)]
pub(crate) struct Interner {
    ids: HashMap<Vec<u8>, Val>,
    observed: std::collections::HashSet<Vec<u8>>,
    pub(crate) values: Vec<Vec<u8>>,
}

impl Interner {
    /// An interner for this partition: values observed by some op keep their identity.
    pub(crate) fn new<'a>(ops: impl Iterator<Item = (&'a KvInput, Option<&'a KvOutput>)>) -> Self {
        let mut observed = std::collections::HashSet::new();
        for (input, output) in ops {
            if let KvInput::Cas {
                expect: Expect::Value(Some(v)),
                ..
            } = input
            {
                observed.insert(v.clone());
            }
            if let Some(KvOutput::Get { value: Some(v), .. }) = output {
                observed.insert(v.clone());
            }
        }
        Self {
            ids: HashMap::new(),
            observed,
            values: vec![b"<a value nobody observed>".to_vec()],
        }
    }

    /// A written value's id: [`ANON`] unless observed.
    pub(crate) fn written(&mut self, v: &[u8]) -> Val {
        if self.observed.contains(v) {
            self.id(v)
        } else {
            ANON
        }
    }

    pub(crate) fn id(&mut self, v: &[u8]) -> Val {
        if let Some(id) = self.ids.get(v) {
            return *id;
        }
        let id = Val::try_from(self.values.len()).unwrap_or(Val::MAX);
        self.values.push(v.to_vec());
        self.ids.insert(v.to_vec(), id);
        id
    }

    pub(crate) fn input(&mut self, i: &KvInput) -> CIn {
        match i {
            KvInput::Get { .. } => CIn::Get,
            KvInput::Put { value, .. } => CIn::Put(self.written(value)),
            KvInput::Delete { .. } => CIn::Delete,
            KvInput::Cas { expect, value, .. } => {
                let e = match expect {
                    Expect::Value(v) => CExpect::Value(v.as_deref().map(|v| self.id(v))),
                    Expect::ModRevision(r) => CExpect::ModRevision(*r),
                };
                CIn::Cas(e, self.written(value))
            }
        }
    }

    pub(crate) fn output(&mut self, o: &KvOutput) -> COut {
        match o {
            KvOutput::Get {
                value,
                mod_revision,
            } => COut::Get(value.as_deref().map(|v| self.id(v)), *mod_revision),
            KvOutput::Put { revision } => COut::Put(*revision),
            KvOutput::Delete { deleted, revision } => COut::Delete(*deleted, *revision),
            KvOutput::Cas {
                succeeded,
                revision,
            } => COut::Cas(*succeeded, *revision),
        }
    }
}

/// The mod_revision of the current value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Rev {
    Known(i64),
    /// Some revision above the floor, none of these.
    Unknown(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct KeyState {
    pub(crate) value: Option<Val>,
    pub(crate) rev: Rev,
    pub(crate) floor: i64,
}

/// Which write a revision is known to belong to (from any operation's output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A write of this value to this key.
    Value(Val),
    /// A delete of this key.
    Delete,
    /// A write to another key.
    OtherKey,
}

/// The sequential specification of one key. `owners` holds the revisions the whole history
/// attributes to a write: a value of unknown revision cannot have a revision that belongs to
/// another write (etcd gives every write its own revision; values are told apart unless
/// anonymous).
#[derive(Debug, Default)]
pub(crate) struct KeyModel {
    pub(crate) owners: HashMap<i64, Owner>,
}

impl KeyModel {
    /// May the current value `v` have revision `r`?
    fn may_own(&self, v: Option<Val>, r: i64) -> bool {
        match (self.owners.get(&r), v) {
            (None, _) => true,
            (Some(Owner::Value(o)), Some(v)) => *o == v || *o == ANON || v == ANON,
            _ => false,
        }
    }
}

impl KeyState {
    /// The state after writing `v` with revision `rev` (`None` = unknown); `None` if illegal.
    fn written(&self, v: Option<Val>, rev: Option<i64>) -> Option<KeyState> {
        let (rev, floor) = match rev {
            Some(r) if r <= self.floor => return None,
            Some(r) => (
                if v.is_some() {
                    Rev::Known(r)
                } else {
                    Rev::Known(0)
                },
                r,
            ),
            None if v.is_some() => (Rev::Unknown(Vec::new()), self.floor),
            None => (Rev::Known(0), self.floor),
        };
        Some(KeyState {
            value: v,
            rev,
            floor,
        })
    }

    /// Bind an unknown mod_revision to `r` (or check a known one); `None` if impossible.
    fn bind(&self, r: i64, m: &KeyModel) -> Option<KeyState> {
        match &self.rev {
            Rev::Known(x) => (*x == r).then(|| self.clone()),
            Rev::Unknown(not) => (r > self.floor && !not.contains(&r) && m.may_own(self.value, r))
                .then_some(KeyState {
                    value: self.value,
                    rev: Rev::Known(r),
                    floor: r,
                }),
        }
    }

    /// Record that the mod_revision is not `r`; `None` if it is.
    fn exclude(&self, r: i64) -> Option<KeyState> {
        match &self.rev {
            Rev::Known(x) => (*x != r).then(|| self.clone()),
            Rev::Unknown(not) if r <= self.floor || not.contains(&r) => Some(self.clone()),
            Rev::Unknown(not) => {
                let mut not = not.clone();
                not.push(r);
                not.sort_unstable();
                Some(KeyState {
                    value: self.value,
                    rev: Rev::Unknown(not),
                    floor: self.floor,
                })
            }
        }
    }

    /// The states in which the compare is true, and those in which it is false.
    fn compare(&self, e: &CExpect, m: &KeyModel) -> (Option<KeyState>, Option<KeyState>) {
        match e {
            CExpect::Value(v) if *v == self.value => (Some(self.clone()), None),
            CExpect::Value(_) => (None, Some(self.clone())),
            CExpect::ModRevision(r) => (self.bind(*r, m), self.exclude(*r)),
        }
    }
}

impl Model for KeyModel {
    type State = KeyState;
    type Input = CIn;
    type Output = COut;

    fn init(&self) -> KeyState {
        KeyState {
            value: None,
            rev: Rev::Known(0),
            floor: 0,
        }
    }

    fn step(&self, s: &KeyState, input: &CIn, output: Option<&COut>) -> Vec<KeyState> {
        let one = |x: Option<KeyState>| x.into_iter().collect::<Vec<_>>();
        match (input, output) {
            (CIn::Get, None) => vec![s.clone()],
            (CIn::Get, Some(COut::Get(v, rev))) => {
                if *v != s.value {
                    return vec![];
                }
                match (v, rev) {
                    (Some(_), Some(r)) => one(s.bind(*r, self)),
                    _ => vec![s.clone()],
                }
            }
            (CIn::Put(v), None) => one(s.written(Some(*v), None)),
            (CIn::Put(v), Some(COut::Put(rev))) => one(s.written(Some(*v), *rev)),
            (CIn::Delete, None) => one(s.written(None, None)),
            (CIn::Delete, Some(COut::Delete(deleted, rev))) => match (s.value, deleted) {
                (Some(_), 1) => one(s.written(None, *rev)),
                (None, 0) => vec![s.clone()],
                _ => vec![],
            },
            (CIn::Cas(e, v), out) => {
                let (yes, no) = s.compare(e, self);
                let mut next = Vec::new();
                match out {
                    // unknown outcome: only the effectful branch. The no-op one (compare
                    // false) can only add an exclusion, and leaving the op unlinearized (it
                    // never returned) allows everything that branch allows.
                    None => next.extend(yes.and_then(|y| y.written(Some(*v), None))),
                    Some(COut::Cas(true, rev)) => {
                        next.extend(yes.and_then(|y| y.written(Some(*v), *rev)));
                    }
                    Some(COut::Cas(false, _)) => next.extend(no),
                    Some(_) => {}
                }
                next
            }
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_on_unknown_revision_branches() {
        let m = KeyModel::default();
        let s = m.step(&m.init(), &CIn::Put(0), Some(&COut::Put(Some(5))))[0].clone();
        let s = m.step(&s, &CIn::Put(1), None)[0].clone();
        assert_eq!(s.rev, Rev::Unknown(vec![]));
        // unknown outcome of a CAS on mod_revision 9: applied (bound 9); not applied = unlinearized
        let next = m.step(&s, &CIn::Cas(CExpect::ModRevision(9), 2), None);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].value, Some(2));
        // a CAS on a revision at or below the floor cannot succeed
        assert!(m
            .step(
                &s,
                &CIn::Cas(CExpect::ModRevision(5), 2),
                Some(&COut::Cas(true, None))
            )
            .is_empty());
        // a failed CAS on 9 then a Get reporting 9 is impossible
        let s2 = m.step(
            &s,
            &CIn::Cas(CExpect::ModRevision(9), 2),
            Some(&COut::Cas(false, None)),
        )[0]
        .clone();
        assert!(m
            .step(&s2, &CIn::Get, Some(&COut::Get(Some(1), Some(9))))
            .is_empty());
        assert_eq!(
            m.step(&s2, &CIn::Get, Some(&COut::Get(Some(1), Some(10))))[0].rev,
            Rev::Known(10)
        );
    }

    #[test]
    fn revisions_must_grow_and_deletes_count() {
        let m = KeyModel::default();
        let s = m.step(&m.init(), &CIn::Put(0), Some(&COut::Put(Some(5))))[0].clone();
        assert!(m
            .step(&s, &CIn::Put(1), Some(&COut::Put(Some(5))))
            .is_empty());
        assert!(m
            .step(&s, &CIn::Delete, Some(&COut::Delete(0, None)))
            .is_empty());
        let d = m.step(&s, &CIn::Delete, Some(&COut::Delete(1, Some(6))))[0].clone();
        assert_eq!(d.value, None);
        assert_eq!(d.rev, Rev::Known(0));
        assert_eq!(
            m.step(&d, &CIn::Delete, Some(&COut::Delete(0, None))).len(),
            1
        );
        // a CAS "key absent" by mod_revision 0 succeeds on the deleted key
        assert_eq!(
            m.step(
                &d,
                &CIn::Cas(CExpect::ModRevision(0), 2),
                Some(&COut::Cas(true, Some(7)))
            )
            .len(),
            1
        );
    }
}

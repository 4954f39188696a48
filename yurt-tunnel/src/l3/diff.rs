//! Plan differences: [`diff`] lists what a driver must do to go from the state it applied to a
//! new plan, touching only what changed, and [`teardown`] lists how to remove everything a plan
//! put on the node (on shutdown, or when the node stops being in the layer 3 network).

use super::plan::{Item, Plan};

/// One step for a driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Create `0`.
    Add(Item),
    /// Change an existing object in place (same [`super::ItemKey`]).
    Update {
        /// What is there now.
        old: Item,
        /// What it must become.
        new: Item,
    },
    /// Delete `0`.
    Remove(Item),
}

/// The changes from `old` to `new`: first every removal, in reverse dependency order (routes
/// and skip-NAT entries before the peers and neighbours they use, devices last), then additions
/// and in-place updates in dependency order (devices first). Items equal in both plans produce
/// nothing, so `diff(p, p)` is empty.
pub fn diff(old: &Plan, new: &Plan) -> Vec<Change> {
    let old = old.clone().into_items();
    let new = new.clone().into_items();
    let mut out: Vec<Change> = old
        .iter()
        .rev()
        .filter(|(k, _)| !new.contains_key(*k))
        .map(|(_, item)| Change::Remove(item.clone()))
        .collect();
    for (key, item) in &new {
        match old.get(key) {
            None => out.push(Change::Add(item.clone())),
            Some(was) if was != item => out.push(Change::Update {
                old: was.clone(),
                new: item.clone(),
            }),
            Some(_) => {}
        }
    }
    out
}

/// The changes that remove everything `plan` created: `diff(plan, empty)`.
pub fn teardown(plan: &Plan) -> Vec<Change> {
    diff(plan, &Plan::empty())
}

/// Applies `changes` to `plan` the way a driver would, returning the resulting state. Lets
/// callers (and tests) check that a diff leads exactly to its target. The role is kept from
/// `plan` (changes carry items only).
pub fn apply(plan: &Plan, changes: &[Change]) -> Plan {
    let mut items = plan.clone().into_items();
    for change in changes {
        match change {
            Change::Add(item) | Change::Update { new: item, .. } => {
                items.insert(item.key(), item.clone());
            }
            Change::Remove(item) => {
                items.remove(&item.key());
            }
        }
    }
    Plan::from_items(plan.role.clone(), items.into_values())
}

//! One view of the fleet per run, in front of the backend: every plugin
//! read, every policy decision and the recovery watch go through it, so a
//! run costs as few API calls as the APIs allow.
//!
//! - A read is reused while it is younger than `max_age_ms` on the
//!   backend's clock, counted from when it was *sent*; older data is read
//!   again, never served (0 reads everything afresh). A read made for a
//!   caller is what that caller gets.
//! - Groups are read with their members (one DescribeAutoScalingGroups
//!   answer carries both), stale groups together in one batched read.
//! - Instances are read for what only the instance API knows (state, tags),
//!   by id in one batched read with every watched victim, and completed
//!   from their group's snapshot.
//! - The host's own terminations make the victim and its group stale; the
//!   victim is known again from the termination's answer where the API
//!   gives its state (EC2's does), as old as what was known before.
//! - Only instances a caller chose to keep (what the plugin may see) and
//!   the host's victims are kept, so whether a read is needed never tells a
//!   plugin anything about what lies outside its scope.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{
    Capacity, Cloud, CloudError, Group, GroupSnapshot, Instance, InstanceQuery, InstanceState,
    Lifecycle, Millis,
};

/// Most instance ids one read asks for: one DescribeInstances filter.
const IDS_PER_READ: usize = 200;

/// A value and when the read that brought it was sent.
#[derive(Debug, Clone)]
struct Read<T> {
    at: Millis,
    value: T,
}

#[derive(Debug, Default)]
struct Cache {
    /// When every group was last listed, and what it found. The host's
    /// terminations change members, not groups: the listing stays.
    listing: Option<Read<Arc<Listing>>>,
    /// Groups with members; a stale group is absent. Shared with callers:
    /// a recovery poll over hundreds of victims copies no group.
    groups: BTreeMap<String, Read<Arc<GroupSnapshot>>>,
    /// Instances as the instance API answered, before completion.
    instances: BTreeMap<String, Read<Instance>>,
    /// The last answer for every instance, as the instance API gave it: a
    /// survey's read, which answers any query while fresh. Dropped at the
    /// host's first termination.
    everything: Option<Read<Arc<Vec<Instance>>>>,
    /// Victims being watched, with their group: read with every lookup.
    watched: BTreeMap<String, Option<String>>,
    /// What was known of each victim while its termination is under way,
    /// for the termination's answer to complete.
    terminating: BTreeMap<String, Read<Instance>>,
}

/// Every group by name, shared between the view and its callers.
pub type Listing = BTreeMap<String, Arc<Group>>;

/// The run's view of the fleet.
pub struct FleetView {
    cloud: Arc<dyn Cloud>,
    max_age_ms: Millis,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for FleetView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetView")
            .field("backend", &self.cloud.kind())
            .field("max_age_ms", &self.max_age_ms)
            .finish_non_exhaustive()
    }
}

impl FleetView {
    /// A view of `cloud` whose reads are kept at most `max_age_ms`.
    pub fn new(cloud: Arc<dyn Cloud>, max_age_ms: Millis) -> FleetView {
        FleetView {
            cloud,
            max_age_ms,
            cache: Mutex::default(),
        }
    }

    /// The backend, for what is not a read (terminate, publish, the clock).
    pub fn cloud(&self) -> &Arc<dyn Cloud> {
        &self.cloud
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // Every update is a whole insert or remove: a poisoned cache is
        // still a consistent one.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Strictly younger than the bound: with the bound at the poll
    /// interval, a read from the last poll is not reused at this one.
    fn is_fresh(&self, at: Millis, now: Millis) -> bool {
        now.saturating_sub(at) < self.max_age_ms
    }

    /// Every group, by name (without members: see [`FleetView::groups`]).
    pub(crate) async fn all_groups(&self) -> Result<Arc<Listing>, CloudError> {
        let now = self.cloud.now_ms();
        if let Some(listing) = self
            .cache()
            .listing
            .as_ref()
            .filter(|listing| self.is_fresh(listing.at, now))
        {
            // Shared, not copied: a plugin polling one group's health in a
            // fleet of thousands must not copy the fleet's listing each time.
            return Ok(Arc::clone(&listing.value));
        }
        let found = self.cloud.groups(None).await?;
        let mut cache = self.cache();
        cache.groups.clear();
        let mut listing = BTreeMap::new();
        for group in found {
            let name = group.group.name.clone();
            listing.insert(name.clone(), Arc::clone(&group.group));
            cache.groups.insert(
                name,
                Read {
                    at: now,
                    value: group,
                },
            );
        }
        let listing = Arc::new(listing);
        cache.listing = Some(Read {
            at: now,
            value: Arc::clone(&listing),
        });
        Ok(listing)
    }

    /// One group by name: from the listing while it is fresh, else from a
    /// read of that group alone (with the watched victims' stale groups),
    /// so that a decision about one group never lists a whole fleet again.
    pub(crate) async fn group(&self, name: &str) -> Result<Option<Arc<Group>>, CloudError> {
        let now = self.cloud.now_ms();
        let listed = {
            let cache = self.cache();
            cache
                .listing
                .as_ref()
                .filter(|listing| self.is_fresh(listing.at, now))
                .map(|listing| listing.value.get(name).cloned())
        };
        if let Some(found) = listed {
            return Ok(found);
        }
        let read = self.groups(&[name.to_owned()]).await?;
        Ok(read.first().map(|snapshot| Arc::clone(&snapshot.group)))
    }

    /// The named groups, in the order asked; unknown names are left out.
    /// Stale ones are read in one batch with the watched victims' groups.
    pub async fn groups(&self, names: &[String]) -> Result<Vec<Arc<GroupSnapshot>>, CloudError> {
        let now = self.cloud.now_ms();
        let (known, stale) = {
            let cache = self.cache();
            let mut known = BTreeMap::new();
            let mut stale = BTreeSet::new();
            for name in names {
                match cache.groups.get(name) {
                    Some(read) if self.is_fresh(read.at, now) => {
                        known.insert(name.as_str(), Arc::clone(&read.value));
                    }
                    _ => {
                        stale.insert(name.clone());
                    }
                }
            }
            if !stale.is_empty() {
                for group in cache.watched.values().flatten() {
                    if !cache
                        .groups
                        .get(group)
                        .is_some_and(|read| self.is_fresh(read.at, now))
                    {
                        stale.insert(group.clone());
                    }
                }
            }
            (known, stale)
        };
        if !stale.is_empty() {
            let stale: Vec<String> = stale.into_iter().collect();
            let found = self.cloud.groups(Some(&stale)).await?;
            let mut cache = self.cache();
            for name in &stale {
                cache.groups.remove(name);
            }
            let mut read = BTreeMap::new();
            for group in found {
                read.insert(group.group.name.clone(), Arc::clone(&group));
                cache.groups.insert(
                    group.group.name.clone(),
                    Read {
                        at: now,
                        value: group,
                    },
                );
            }
            return Ok(names
                .iter()
                .filter_map(|name| known.get(name.as_str()).or_else(|| read.get(name)).cloned())
                .collect());
        }
        Ok(names
            .iter()
            .filter_map(|name| known.get(name.as_str()).cloned())
            .collect())
    }

    /// Capacity of the named groups, in the order asked.
    pub async fn capacity(&self, names: &[String]) -> Result<Vec<(String, Capacity)>, CloudError> {
        Ok(self
            .groups(names)
            .await?
            .into_iter()
            .map(|g| (g.group.name.clone(), g.capacity()))
            .collect())
    }

    /// Instances matching the query, sorted by id; those `keep` accepts
    /// are kept for later lookups, and only those are returned.
    pub async fn list_instances(
        &self,
        query: &InstanceQuery,
        keep: impl Fn(&Instance) -> bool,
    ) -> Result<Vec<Instance>, CloudError> {
        let now = self.cloud.now_ms();
        let everything = self
            .cache()
            .everything
            .as_ref()
            .filter(|read| self.is_fresh(read.at, now))
            .map(|read| (read.at, Arc::clone(&read.value)));
        let (now, raw) = match everything {
            // What the completion changes (lifecycle, health), a query
            // does not ask: the raw answer filters as a query's would.
            Some((at, all)) => (
                at,
                all.iter().filter(|i| query.matches(i)).cloned().collect(),
            ),
            None => (now, self.cloud.instances(query).await?),
        };
        let completed = self.complete(raw.clone()).await?;
        let mut kept = Vec::new();
        let mut cache = self.cache();
        for (raw, instance) in raw.into_iter().zip(completed) {
            if query.matches(&instance) && keep(&instance) {
                cache.instances.insert(
                    raw.id.clone(),
                    Read {
                        at: now,
                        value: raw,
                    },
                );
                kept.push(instance);
            }
        }
        Ok(kept)
    }

    /// Every instance, completed, for a survey of the whole fleet: kept as
    /// one listing that later queries reuse while it is fresh, but not one
    /// by one, so a lookup by id costs what it cost before the survey.
    pub(crate) async fn survey_instances(&self) -> Result<Vec<Instance>, CloudError> {
        let now = self.cloud.now_ms();
        let raw = self.cloud.instances(&InstanceQuery::default()).await?;
        let completed = self.complete(raw.clone()).await?;
        self.cache().everything = Some(Read {
            at: now,
            value: Arc::new(raw),
        });
        Ok(completed)
    }

    /// One instance, including one that terminated a while ago.
    pub async fn describe_instance(&self, id: &str) -> Result<Option<Instance>, CloudError> {
        Ok(self.describe(&[id.to_owned()]).await?.into_iter().next())
    }

    /// These instances, sorted by id; unknown ids are left out. What is not
    /// fresh is read in one batch with every stale watched victim.
    pub async fn describe(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        let now = self.cloud.now_ms();
        let (mut raw, missing, kept_before) = {
            let cache = self.cache();
            let mut raw = BTreeMap::new();
            let mut missing = BTreeSet::new();
            let mut kept_before = BTreeSet::new();
            for id in ids {
                match cache.instances.get(id) {
                    Some(read) if self.is_fresh(read.at, now) => {
                        raw.insert(id.clone(), read.value.clone());
                    }
                    Some(_) => {
                        kept_before.insert(id.clone());
                        missing.insert(id.clone());
                    }
                    None => {
                        missing.insert(id.clone());
                    }
                }
            }
            if !missing.is_empty() {
                for id in cache.watched.keys() {
                    if !cache
                        .instances
                        .get(id)
                        .is_some_and(|read| self.is_fresh(read.at, now))
                    {
                        missing.insert(id.clone());
                    }
                }
                // Fill the read up to one call with other kept instances
                // gone stale: the next lookups are likely among them.
                for (id, read) in &cache.instances {
                    if missing.len() >= IDS_PER_READ {
                        break;
                    }
                    if !self.is_fresh(read.at, now) && missing.insert(id.clone()) {
                        kept_before.insert(id.clone());
                    }
                }
            }
            (raw, missing, kept_before)
        };
        if !missing.is_empty() {
            let missing: Vec<String> = missing.into_iter().collect();
            let found = self.cloud.instances_by_id(&missing).await?;
            // A set: a poll of hundreds of victims is not quadratic.
            let asked: BTreeSet<&String> = ids.iter().collect();
            let mut cache = self.cache();
            for id in &missing {
                // Gone from the backend: forget it.
                cache.instances.remove(id);
            }
            for instance in found {
                let id = instance.id.clone();
                if cache.watched.contains_key(&id) || asked.contains(&id) {
                    raw.insert(id.clone(), instance.clone());
                }
                // Kept only if the host watches it or kept it before: a
                // plugin's lookup of an id it was never shown must cost the
                // same next time.
                if cache.watched.contains_key(&id) || kept_before.contains(&id) {
                    cache.instances.insert(
                        id,
                        Read {
                            at: now,
                            value: instance,
                        },
                    );
                }
            }
        }
        let raw: Vec<Instance> = ids.iter().filter_map(|id| raw.remove(id)).collect();
        let mut completed = self.complete(raw).await?;
        completed.sort_by(|a, b| a.id.cmp(&b.id));
        completed.dedup_by(|a, b| a.id == b.id);
        Ok(completed)
    }

    /// Put each instance's group answer (lifecycle, health) in place of
    /// what the instance API alone could tell.
    async fn complete(&self, raw: Vec<Instance>) -> Result<Vec<Instance>, CloudError> {
        let names: BTreeSet<String> = raw.iter().filter_map(|i| i.group.clone()).collect();
        let names: Vec<String> = names.into_iter().collect();
        let groups: BTreeMap<String, Arc<GroupSnapshot>> = self
            .groups(&names)
            .await?
            .into_iter()
            .map(|g| (g.group.name.clone(), g))
            .collect();
        Ok(raw
            .into_iter()
            .map(|instance| complete(instance, &groups))
            .collect())
    }

    /// The host terminated `id`: it and its group are stale, and it is
    /// watched until [`FleetView::settled`].
    pub fn terminated(&self, id: &str, group: Option<&str>) {
        let mut cache = self.cache();
        if let Some(read) = cache.instances.remove(id) {
            cache.terminating.insert(id.to_owned(), read);
        }
        Self::forget(&mut cache, &[], group);
        cache
            .watched
            .insert(id.to_owned(), group.map(str::to_owned));
    }

    /// The host changed `ids` and `group` (a fault): what was read of them
    /// is stale. Unlike a termination, nothing is watched.
    pub(crate) fn changed(&self, ids: &[&str], group: Option<&str>) {
        Self::forget(&mut self.cache(), ids, group);
    }

    /// Drop the listing, the reads of `ids` and of `group`.
    fn forget(cache: &mut Cache, ids: &[&str], group: Option<&str>) {
        cache.everything = None;
        for id in ids {
            cache.instances.remove(*id);
        }
        if let Some(group) = group {
            cache.groups.remove(group);
        }
    }

    /// The termination of `id` was answered with its new state: what was
    /// known of it before, with that state, is a read as old as the older
    /// of the two (the earlier read's), never a newer one.
    pub fn terminate_answered(&self, id: &str, state: InstanceState) {
        let mut cache = self.cache();
        if let Some(mut read) = cache.terminating.remove(id) {
            read.value.state = state;
            cache.instances.insert(id.to_owned(), read);
        }
    }

    /// The host is done watching `id`.
    pub fn settled(&self, id: &str) {
        let mut cache = self.cache();
        cache.watched.remove(id);
        cache.terminating.remove(id);
    }
}

/// An instance with its group's answer about it: a member has the group's
/// lifecycle and health; an instance of a group that no longer lists it is
/// on its way out (or detached), whatever its state.
fn complete(mut instance: Instance, groups: &BTreeMap<String, Arc<GroupSnapshot>>) -> Instance {
    let Some(snapshot) = instance.group.as_ref().and_then(|g| groups.get(g)) else {
        return instance;
    };
    if let Some(member) = snapshot.member(&instance.id) {
        instance.lifecycle = Some(member.lifecycle);
        instance.healthy = member.healthy;
    } else if matches!(
        instance.lifecycle,
        Some(Lifecycle::InService | Lifecycle::Pending | Lifecycle::Standby)
    ) {
        // The group's read is the fresher word on membership.
        instance.lifecycle = Some(Lifecycle::Detached);
        instance.healthy = false;
    }
    instance
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::sim::{FleetSpec, SimCloud};
    use crate::cloud::TerminateVia;

    /// Ten groups of three on the simulator, viewed with a one-second bound.
    fn view() -> (Arc<SimCloud>, FleetView, Vec<String>) {
        let sim = Arc::new(SimCloud::new(FleetSpec::uniform(10, 3), 1).unwrap());
        let names = (0..10).map(|i| format!("group-{i:04}")).collect();
        let view = FleetView::new(Arc::clone(&sim) as Arc<dyn Cloud>, 1000);
        (sim, view, names)
    }

    /// [`view`], with every instance listed (and kept) through it.
    async fn listed() -> (Arc<SimCloud>, FleetView, Vec<String>, Vec<Instance>) {
        let (sim, view, names) = view();
        let instances = view
            .list_instances(&InstanceQuery::default(), |_| true)
            .await
            .unwrap();
        (sim, view, names, instances)
    }

    #[tokio::test]
    async fn reads_within_the_bound_are_shared_and_older_ones_are_read_again() {
        let (sim, view, names) = view();
        view.all_groups().await.unwrap();
        for name in &names {
            view.capacity(std::slice::from_ref(name)).await.unwrap();
        }
        assert_eq!(sim.api_calls(), 1, "one listing serves every group");
        sim.sleep_ms(999).await;
        view.capacity(&names[..1]).await.unwrap();
        assert_eq!(sim.api_calls(), 1);
        sim.sleep_ms(1).await;
        view.capacity(&names[..1]).await.unwrap();
        assert_eq!(sim.api_calls(), 2, "a read as old as the bound is not used");
    }

    #[tokio::test]
    async fn a_survey_answers_later_queries_until_the_first_termination() {
        let (sim, view, names) = view();
        view.all_groups().await.unwrap();
        let all = view.survey_instances().await.unwrap();
        assert_eq!(all.len(), 30);
        let calls = sim.api_calls();
        let one_group = InstanceQuery {
            groups: Some(names[..1].iter().cloned().collect()),
            ..InstanceQuery::default()
        };
        let listed = view.list_instances(&one_group, |_| true).await.unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().all(|i| i.group.as_ref() == Some(&names[0])));
        assert_eq!(sim.api_calls(), calls, "answered from the survey");
        // A survey keeps no instance for lookups by id: an id costs what
        // it cost before, shown to a plugin or not.
        view.describe_instance(&all[29].id).await.unwrap();
        assert_eq!(sim.api_calls(), calls + 1);
        let victim = &listed[0];
        sim.terminate(&victim.id, TerminateVia::Ec2).await.unwrap();
        view.terminated(&victim.id, victim.group.as_deref());
        let relisted = view.list_instances(&one_group, |_| true).await.unwrap();
        let seen = relisted.iter().find(|i| i.id == victim.id);
        assert!(
            seen.is_none_or(|i| i.state != InstanceState::Running),
            "the survey is dropped at a termination: {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_fault_is_seen_and_watches_nothing() {
        let (sim, view, names) = view();
        let all = view.survey_instances().await.unwrap();
        let stopped = &all[0];
        view.describe_instance(&stopped.id).await.unwrap();
        sim.stop_instance(&stopped.id).await.unwrap();
        view.changed(&[&stopped.id], Some(&names[0]));
        // Seen as the fault left it.
        let seen = view.describe_instance(&stopped.id).await.unwrap();
        assert_eq!(seen.map(|i| i.state), Some(InstanceState::Stopped));
        // A fault is not a termination: nothing is watched, and no later
        // read carries it (or, for a group fault, an empty id).
        view.changed(&[], Some(&names[1]));
        assert!(view.cache().watched.is_empty());
        assert!(view.cache().terminating.is_empty());
    }

    #[tokio::test]
    async fn a_termination_makes_its_group_stale_and_victims_are_read_together() {
        let (sim, view, names, instances) = listed().await;
        let calls = sim.api_calls();
        // One victim in each of the first three groups.
        let victims: Vec<&Instance> = names[..3]
            .iter()
            .map(|g| {
                instances
                    .iter()
                    .find(|i| i.group.as_ref() == Some(g))
                    .unwrap()
            })
            .collect();
        for victim in &victims {
            sim.terminate(&victim.id, TerminateVia::Ec2).await.unwrap();
            view.terminated(&victim.id, victim.group.as_deref());
        }
        let calls = sim.api_calls() - calls;
        assert_eq!(calls, 3, "the terminations alone");
        let before = sim.api_calls();
        // An untouched group is still fresh.
        view.capacity(&names[5..6]).await.unwrap();
        assert_eq!(sim.api_calls(), before);
        // The first victim's lookup reads all three, and all three groups.
        let seen = view
            .describe_instance(&victims[0].id)
            .await
            .unwrap()
            .unwrap();
        assert!(seen.is_going_away(), "{seen:?}");
        assert_eq!(sim.api_calls(), before + 2);
        for victim in &victims[1..] {
            let seen = view.describe_instance(&victim.id).await.unwrap().unwrap();
            assert!(seen.is_going_away(), "{seen:?}");
        }
        view.capacity(&names[..3]).await.unwrap();
        assert_eq!(sim.api_calls(), before + 2);
    }

    #[tokio::test]
    async fn a_victim_is_known_from_its_termination_answer_as_old_as_before() {
        let (sim, view, names, listed) = listed().await;
        let victim = listed
            .iter()
            .find(|i| i.group.as_ref() == Some(&names[0]))
            .unwrap()
            .clone();
        sim.sleep_ms(600).await;
        view.terminated(&victim.id, victim.group.as_deref());
        let state = sim.terminate(&victim.id, TerminateVia::Ec2).await.unwrap();
        view.terminate_answered(&victim.id, state.unwrap());
        let before = sim.api_calls();
        let seen = view.describe_instance(&victim.id).await.unwrap().unwrap();
        assert_eq!(seen.state, InstanceState::ShuttingDown);
        assert!(seen.is_going_away(), "{seen:?}");
        assert_eq!(sim.api_calls(), before + 1, "its group's read alone");
        // The bound runs from the listing, not from the answer.
        sim.sleep_ms(400).await;
        let before = sim.api_calls();
        view.describe_instance(&victim.id).await.unwrap().unwrap();
        assert_eq!(sim.api_calls(), before + 1, "read again at the bound");
    }

    #[tokio::test]
    async fn only_what_the_caller_keeps_is_reused() {
        let (sim, view, names) = view();
        let kept = view
            .list_instances(&InstanceQuery::default(), |i| {
                i.group.as_deref() == Some(names[0].as_str())
            })
            .await
            .unwrap();
        assert_eq!(kept.len(), 3);
        let all = sim.list_instances(&InstanceQuery::default()).await.unwrap();
        let hidden = all
            .iter()
            .find(|i| i.group.as_deref() == Some(names[1].as_str()))
            .unwrap();
        let before = sim.api_calls();
        view.describe_instance(&kept[0].id).await.unwrap().unwrap();
        assert_eq!(sim.api_calls(), before, "a kept instance costs no call");
        // An instance the caller did not keep costs a read each time, as
        // one that does not exist does.
        for id in [
            hidden.id.as_str(),
            hidden.id.as_str(),
            "i-0000000000000dead",
        ] {
            let calls = sim.api_calls();
            view.describe_instance(id).await.unwrap();
            assert_eq!(sim.api_calls(), calls + 1, "{id}");
        }
    }
}

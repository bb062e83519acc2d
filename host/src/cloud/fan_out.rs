//! One run over several account-regions. Each leg is a backend of its own
//! (its account's role, its region); the rest of the host sees one fleet
//! whose group, zone, subnet and VPC names read `ACCOUNT/REGION/NAME`, so a
//! group of one account is never taken for the same name in another (the
//! kill history, the ledger and `min_time_between_kills` key on the whole
//! name). Instance ids stay AWS's own; each is kept with the one leg that
//! reported it, and a second leg reporting it stops the read: an
//! account-region reached twice would count its instances twice against
//! the blast radius.
//!
//! Legs are read `workers` at a time, and each account's calls, across its
//! regions, are held to a rate (`[fan_out] calls_per_second`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::{
    Alarm, ApiCalls, Cloud, CloudError, Group, GroupSnapshot, Instance, InstanceQuery,
    InstanceState, Member, Millis, ScalingProcess, SubnetAcl, TerminateVia, Whereabouts,
};
use crate::kill_switch::{Pause, Switch, SwitchScope};

/// How the host becomes a leg's account: a role it assumes through STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The role.
    pub role_arn: String,
    /// Its external id.
    pub external_id: Option<String>,
    /// The session name.
    pub session_name: String,
}

/// An account's calls per second, shared by its regions' legs.
pub(crate) type Budget = governor::DefaultDirectRateLimiter;

/// One account-region of the run.
pub(crate) struct Leg {
    /// The account's id.
    account: String,
    /// Its region.
    region: String,
    /// `NAME/REGION/`: what every location-bound name of this leg starts
    /// with (NAME is the account's name in the config, else its id).
    prefix: String,
    cloud: Arc<dyn Cloud>,
    budget: Option<Arc<Budget>>,
}

impl Leg {
    /// A leg: `cloud`, which acts in `account` and `region`, shown as
    /// `name`, its calls held to `budget`.
    pub(crate) fn new(
        name: &str,
        account: &str,
        region: &str,
        cloud: Arc<dyn Cloud>,
        budget: Option<Arc<Budget>>,
    ) -> Leg {
        Leg {
            account: account.to_owned(),
            region: region.to_owned(),
            prefix: format!("{name}/{region}/"),
            cloud,
            budget,
        }
    }

    /// The leg as the operator reads it: `NAME/REGION`.
    pub(crate) fn shown(&self) -> &str {
        self.prefix.trim_end_matches('/')
    }

    fn qualified(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn own<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(&self.prefix)
    }

    /// `work` within the account's budget: one call's worth before it,
    /// and the pages it made beyond one after it, so later calls wait for
    /// them (a concurrent call's pages may be paid twice: never too few).
    async fn metered<T>(&self, work: impl Future<Output = T>) -> T {
        let Some(budget) = &self.budget else {
            return work.await;
        };
        budget.until_ready().await;
        let before = total(&self.cloud.api_calls());
        let answer = work.await;
        let owed = total(&self.cloud.api_calls())
            .saturating_sub(before)
            .saturating_sub(1);
        for _ in 0..owed {
            budget.until_ready().await;
        }
        answer
    }

    fn at(&self, err: CloudError) -> CloudError {
        let shown = self.shown();
        match err {
            CloudError::NotFound(why) => CloudError::NotFound(format!("{shown}: {why}")),
            CloudError::Throttled(why) => CloudError::Throttled(format!("{shown}: {why}")),
            CloudError::Backend(why) => CloudError::Backend(format!("{shown}: {why}")),
            CloudError::Refused(why) => CloudError::Refused(format!("{shown}: {why}")),
        }
    }

    fn snapshot(&self, snapshot: &GroupSnapshot) -> Arc<GroupSnapshot> {
        let group = &snapshot.group;
        Arc::new(GroupSnapshot {
            group: Arc::new(Group {
                name: self.qualified(&group.name),
                zones: group.zones.iter().map(|z| self.qualified(z)).collect(),
                ..Group::clone(group)
            }),
            members: snapshot
                .members
                .iter()
                .map(|m| Member {
                    zone: self.qualified(&m.zone),
                    ..m.clone()
                })
                .collect(),
        })
    }

    fn instance(&self, mut instance: Instance) -> Instance {
        instance.group = instance.group.map(|g| self.qualified(&g));
        instance.zone = self.qualified(&instance.zone);
        instance.subnet = instance.subnet.map(|s| self.qualified(&s));
        instance
    }

    fn acl(&self, acl: SubnetAcl) -> SubnetAcl {
        SubnetAcl {
            subnet: self.qualified(&acl.subnet),
            vpc: self.qualified(&acl.vpc),
            acl: self.qualified(&acl.acl),
        }
    }

    /// `acl` as this leg's backend names it, if it is this leg's.
    fn own_acl(&self, acl: &SubnetAcl) -> Option<SubnetAcl> {
        Some(SubnetAcl {
            subnet: self.own(&acl.subnet)?.to_owned(),
            vpc: self.own(&acl.vpc)?.to_owned(),
            acl: self.own(&acl.acl)?.to_owned(),
        })
    }
}

fn total(calls: &ApiCalls) -> u64 {
    calls.values().sum()
}

/// The budget of `per_second` calls a second.
pub(crate) fn budget(per_second: u32) -> Option<Arc<Budget>> {
    let rate = NonZeroU32::new(per_second)?;
    Some(Arc::new(governor::RateLimiter::direct(
        governor::Quota::per_second(rate),
    )))
}

/// Several account-regions as one backend.
pub(crate) struct FanOut {
    legs: Vec<Leg>,
    /// Where alarms are read and notifications sent: the backend's own
    /// account and region.
    home: Arc<dyn Cloud>,
    /// Whether `home` is also a leg (its calls and switch counted once).
    home_is_leg: bool,
    workers: usize,
    /// The leg each instance id was reported by.
    owners: Mutex<HashMap<String, usize>>,
}

impl FanOut {
    /// `legs` (at least one), read `workers` at a time, with `home` for
    /// alarms and notifications (`None`: the first leg).
    pub(crate) fn new(
        legs: Vec<Leg>,
        home: Option<Arc<dyn Cloud>>,
        workers: usize,
    ) -> anyhow::Result<FanOut> {
        let first = legs
            .first()
            .ok_or_else(|| anyhow::anyhow!("a run over accounts needs at least one"))?;
        let home_is_leg = home.is_none();
        let home = home.unwrap_or_else(|| Arc::clone(&first.cloud));
        Ok(FanOut {
            legs,
            home,
            home_is_leg,
            workers: workers.max(1),
            owners: Mutex::default(),
        })
    }

    /// Each leg's account as its backend reports it checked against the
    /// config's, before anything else is asked: a role that lands in
    /// another account, or an account that cannot be told, stops here.
    pub(crate) async fn check_accounts(&self) -> anyhow::Result<()> {
        let answers: Vec<(usize, Whereabouts)> = futures::stream::iter(0..self.legs.len())
            .map(|i| async move { (i, self.legs[i].cloud.whereabouts().await) })
            .buffer_unordered(self.workers)
            .collect()
            .await;
        let mut wrong = Vec::new();
        for (i, whereabouts) in answers {
            let leg = &self.legs[i];
            match whereabouts.account {
                Some(account) if account == leg.account => {}
                Some(account) => wrong.push(format!(
                    "{}: the credentials act in account {account}, not {}",
                    leg.shown(),
                    leg.account
                )),
                None => wrong.push(format!(
                    "{}: cannot tell which account the credentials act in (sts:GetCallerIdentity failed), so nothing is done there",
                    leg.shown()
                )),
            }
        }
        if wrong.is_empty() {
            return Ok(());
        }
        wrong.sort();
        anyhow::bail!(
            "the accounts are not what the config says:\n  {}",
            wrong.join("\n  ")
        )
    }

    /// `work` on each leg of `asked` with what is asked of it, `workers` at
    /// a time, each within its account's budget; the first failure, named
    /// by its leg, fails all.
    async fn each<'a, A, T, F, Fut>(
        &'a self,
        asked: impl IntoIterator<Item = (usize, A)>,
        work: F,
    ) -> Result<Vec<(usize, T)>, CloudError>
    where
        F: Fn(&'a Leg, A) -> Fut,
        Fut: Future<Output = Result<T, CloudError>> + 'a,
    {
        let work = &work;
        let answers: Vec<(usize, Result<T, CloudError>)> = futures::stream::iter(asked)
            .map(|(i, what)| async move {
                let leg = &self.legs[i];
                (
                    i,
                    leg.metered(work(leg, what))
                        .await
                        .map_err(|err| leg.at(err)),
                )
            })
            .buffer_unordered(self.workers)
            .collect()
            .await;
        let mut done = Vec::with_capacity(answers.len());
        for (i, answer) in answers {
            done.push((i, answer?));
        }
        done.sort_by_key(|(i, _)| *i);
        Ok(done)
    }

    /// Instances from leg `i`, named as the run names them; each id kept
    /// with its leg, and refused when another leg reported it.
    fn adopt(&self, i: usize, found: Vec<Instance>) -> Result<Vec<Instance>, CloudError> {
        let leg = &self.legs[i];
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        for instance in &found {
            let owner = *owners.entry(instance.id.clone()).or_insert(i);
            if owner != i {
                return Err(CloudError::Refused(format!(
                    "instance {} is reported by both {} and {}: one account-region is reached twice, so its instances would count twice; list each once",
                    crate::text::shown(&instance.id, 64),
                    self.legs[owner].shown(),
                    leg.shown()
                )));
            }
        }
        Ok(found.into_iter().map(|i| leg.instance(i)).collect())
    }

    /// Every leg's instances, adopted, sorted by id.
    fn adopted(&self, answers: Vec<(usize, Vec<Instance>)>) -> Result<Vec<Instance>, CloudError> {
        let mut found = Vec::new();
        for (i, instances) in answers {
            found.extend(self.adopt(i, instances)?);
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(found)
    }

    /// The leg of an instance id: the one that reported it, else the one
    /// that knows it now.
    async fn leg_of_instance(&self, id: &str) -> Result<&Leg, CloudError> {
        if let Some(i) = self.owner(id) {
            return Ok(&self.legs[i]);
        }
        self.instances_by_id(&[id.to_owned()]).await?;
        self.owner(id)
            .map(|i| &self.legs[i])
            .ok_or_else(|| CloudError::NotFound(format!("instance {id} in no account-region")))
    }

    fn owner(&self, id: &str) -> Option<usize> {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    /// The index of the leg whose prefix `name` carries, and the name as
    /// that leg calls it.
    fn owner_of<'a>(&self, name: &'a str) -> Option<(usize, &'a str)> {
        self.legs
            .iter()
            .enumerate()
            .find_map(|(i, leg)| Some((i, leg.own(name)?)))
    }

    /// `names` by the leg each is of, as that leg calls them; a name of no
    /// leg is left out.
    fn by_leg(&self, names: &[String]) -> BTreeMap<usize, Vec<String>> {
        let mut by_leg: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (i, own) in names.iter().filter_map(|name| self.owner_of(name)) {
            by_leg.entry(i).or_default().push(own.to_owned());
        }
        by_leg
    }

    /// The leg whose prefix `name` carries, and the name as it calls it.
    fn leg_of<'a>(&self, name: &'a str) -> Result<(&Leg, &'a str), CloudError> {
        self.owner_of(name)
            .map(|(i, own)| (&self.legs[i], own))
            .ok_or_else(|| {
                CloudError::NotFound(format!(
                    "{:?} names no account-region of the run (names read ACCOUNT/REGION/NAME)",
                    crate::text::shown(name, 128)
                ))
            })
    }

    async fn on_instance<T, F, Fut>(&self, id: &str, act: F) -> Result<T, CloudError>
    where
        F: FnOnce(Arc<dyn Cloud>) -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let leg = self.leg_of_instance(id).await?;
        leg.metered(act(Arc::clone(&leg.cloud)))
            .await
            .map_err(|err| leg.at(err))
    }

    async fn on_group<T, F, Fut>(&self, group: &str, act: F) -> Result<T, CloudError>
    where
        F: FnOnce(Arc<dyn Cloud>, String) -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let (leg, own) = self.leg_of(group)?;
        leg.metered(act(Arc::clone(&leg.cloud), own.to_owned()))
            .await
            .map_err(|err| leg.at(err))
    }
}

#[async_trait::async_trait]
impl Cloud for FanOut {
    fn kind(&self) -> &'static str {
        self.home.kind()
    }

    fn now_ms(&self) -> Millis {
        self.legs
            .first()
            .map_or_else(|| self.home.now_ms(), |leg| leg.cloud.now_ms())
    }

    async fn sleep_ms(&self, ms: Millis) {
        // Every leg's clock moves together (the simulator's are virtual).
        futures::future::join_all(self.legs.iter().map(|leg| leg.cloud.sleep_ms(ms))).await;
    }

    async fn groups(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<Arc<GroupSnapshot>>, CloudError> {
        let asked: BTreeMap<usize, Option<Vec<String>>> = match names {
            None => (0..self.legs.len()).map(|i| (i, None)).collect(),
            Some(names) => self
                .by_leg(names)
                .into_iter()
                .map(|(i, own)| (i, Some(own)))
                .collect(),
        };
        let answers = self
            .each(asked, |leg, names| async move {
                leg.cloud.groups(names.as_deref()).await
            })
            .await?;
        let mut groups: Vec<Arc<GroupSnapshot>> = answers
            .into_iter()
            .flat_map(|(i, found)| {
                let leg = &self.legs[i];
                found.into_iter().map(move |g| leg.snapshot(&g))
            })
            .collect();
        groups.sort_by(|a, b| a.group.name.cmp(&b.group.name));
        Ok(groups)
    }

    async fn instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, CloudError> {
        let mut asked: Vec<(usize, InstanceQuery)> = Vec::new();
        for (i, leg) in self.legs.iter().enumerate() {
            let mut own = query.clone();
            if let Some(groups) = &query.groups {
                let mine: BTreeSet<String> = groups
                    .iter()
                    .filter_map(|g| leg.own(g))
                    .map(str::to_owned)
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                own.groups = Some(mine);
            }
            if let Some(zone) = &query.zone {
                let Some(mine) = leg.own(zone) else {
                    continue;
                };
                own.zone = Some(mine.to_owned());
            }
            asked.push((i, own));
        }
        let answers = self
            .each(
                asked,
                |leg, own| async move { leg.cloud.instances(&own).await },
            )
            .await?;
        self.adopted(answers)
    }

    async fn instances_by_id(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        // Known ids go to their leg; the others to every leg.
        let mut by_leg: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut unknown = Vec::new();
        for id in ids {
            match self.owner(id) {
                Some(i) => by_leg.entry(i).or_default().push(id.clone()),
                None => unknown.push(id.clone()),
            }
        }
        if !unknown.is_empty() {
            for i in 0..self.legs.len() {
                by_leg.entry(i).or_default().extend(unknown.iter().cloned());
            }
        }
        let answers = self
            .each(by_leg, |leg, ids| async move {
                leg.cloud.instances_by_id(&ids).await
            })
            .await?;
        self.adopted(answers)
    }

    async fn terminate(
        &self,
        id: &str,
        via: TerminateVia,
    ) -> Result<Option<InstanceState>, CloudError> {
        let id = id.to_owned();
        self.on_instance(&id.clone(), |cloud| async move {
            cloud.terminate(&id, via).await
        })
        .await
    }

    async fn check_terminate_permission(&self, id: &str) -> Result<(), CloudError> {
        let id = id.to_owned();
        self.on_instance(&id.clone(), |cloud| async move {
            cloud.check_terminate_permission(&id).await
        })
        .await
    }

    async fn stop_instance(&self, id: &str) -> Result<(), CloudError> {
        let id = id.to_owned();
        self.on_instance(&id.clone(), |cloud| async move {
            cloud.stop_instance(&id).await
        })
        .await
    }

    async fn start_instance(&self, id: &str) -> Result<(), CloudError> {
        let id = id.to_owned();
        self.on_instance(&id.clone(), |cloud| async move {
            cloud.start_instance(&id).await
        })
        .await
    }

    async fn reboot_instance(&self, id: &str) -> Result<(), CloudError> {
        let id = id.to_owned();
        self.on_instance(&id.clone(), |cloud| async move {
            cloud.reboot_instance(&id).await
        })
        .await
    }

    async fn suspended_processes(&self, group: &str) -> Result<Vec<ScalingProcess>, CloudError> {
        self.on_group(group, |cloud, own| async move {
            cloud.suspended_processes(&own).await
        })
        .await
    }

    async fn suspend_processes(
        &self,
        group: &str,
        processes: &[ScalingProcess],
    ) -> Result<(), CloudError> {
        let processes = processes.to_vec();
        self.on_group(group, |cloud, own| async move {
            cloud.suspend_processes(&own, &processes).await
        })
        .await
    }

    async fn resume_processes(
        &self,
        group: &str,
        processes: &[ScalingProcess],
    ) -> Result<(), CloudError> {
        let processes = processes.to_vec();
        self.on_group(group, |cloud, own| async move {
            cloud.resume_processes(&own, &processes).await
        })
        .await
    }

    async fn subnet_acls(&self, subnets: &[String]) -> Result<Vec<SubnetAcl>, CloudError> {
        let answers = self
            .each(self.by_leg(subnets), |leg, own| async move {
                leg.cloud.subnet_acls(&own).await
            })
            .await?;
        Ok(answers
            .into_iter()
            .flat_map(|(i, acls)| {
                let leg = &self.legs[i];
                acls.into_iter().map(move |acl| leg.acl(acl))
            })
            .collect())
    }

    async fn blackhole_subnets(
        &self,
        vpc: &str,
        subnets: &[String],
        tag: &str,
    ) -> Result<(), CloudError> {
        let (leg, own_vpc) = self.leg_of(vpc)?;
        let own: Option<Vec<String>> = subnets
            .iter()
            .map(|s| leg.own(s).map(str::to_owned))
            .collect();
        let own = own.ok_or_else(|| {
            CloudError::Refused(format!(
                "the subnets are not all of {}, the VPC's account-region",
                leg.shown()
            ))
        })?;
        let own_vpc = own_vpc.to_owned();
        let tag = tag.to_owned();
        leg.metered(leg.cloud.blackhole_subnets(&own_vpc, &own, &tag))
            .await
            .map_err(|err| leg.at(err))
    }

    async fn restore_subnets(&self, restore: &[SubnetAcl], tag: &str) -> Result<(), CloudError> {
        let mut by_leg: BTreeMap<usize, Vec<SubnetAcl>> = BTreeMap::new();
        for acl in restore {
            let found = self
                .legs
                .iter()
                .enumerate()
                .find_map(|(i, leg)| Some((i, leg.own_acl(acl)?)));
            let Some((i, own)) = found else {
                return Err(CloudError::NotFound(format!(
                    "subnet {:?} of no account-region of the run",
                    crate::text::shown(&acl.subnet, 128)
                )));
            };
            by_leg.entry(i).or_default().push(own);
        }
        self.each(by_leg, |leg, own| async move {
            leg.cloud.restore_subnets(&own, tag).await
        })
        .await?;
        Ok(())
    }

    async fn alarms(&self, names: &[String]) -> Result<Vec<Alarm>, CloudError> {
        self.home.alarms(names).await
    }

    fn messaging(&self) -> &dyn super::messaging::Messaging {
        self.home.messaging()
    }

    fn identity(&self) -> String {
        let legs: Vec<&str> = self.legs.iter().map(Leg::shown).collect();
        format!("{} in {}", self.home.identity(), legs.join(", "))
    }

    async fn whereabouts(&self) -> Whereabouts {
        // One account or one region names it; several name none.
        let accounts: BTreeSet<&str> = self.legs.iter().map(|l| l.account.as_str()).collect();
        let regions: BTreeSet<&str> = self.legs.iter().map(|l| l.region.as_str()).collect();
        let one = |set: BTreeSet<&str>| {
            (set.len() == 1)
                .then(|| set.into_iter().next().map(str::to_owned))
                .flatten()
        };
        Whereabouts {
            account: one(accounts),
            region: one(regions),
        }
    }

    fn api_calls(&self) -> ApiCalls {
        let mut calls = if self.home_is_leg {
            ApiCalls::new()
        } else {
            self.home.api_calls()
        };
        for leg in &self.legs {
            for (key, n) in leg.cloud.api_calls() {
                *calls.entry(key).or_default() += n;
            }
        }
        calls
    }

    fn account_switches(&self) -> Vec<Arc<dyn Switch>> {
        let mut switches: Vec<Arc<dyn Switch>> = if self.home_is_leg {
            Vec::new()
        } else {
            self.home.account_switches()
        };
        for leg in &self.legs {
            for inner in leg.cloud.account_switches() {
                switches.push(Arc::new(LegSwitch {
                    leg: leg.shown().to_owned(),
                    inner,
                }));
            }
        }
        switches
    }
}

/// A leg's account switch, its location naming the account.
struct LegSwitch {
    leg: String,
    inner: Arc<dyn Switch>,
}

#[async_trait::async_trait]
impl Switch for LegSwitch {
    async fn paused(&self) -> Option<Pause> {
        self.inner.paused().await
    }

    async fn pause(&self, reason: &str) -> anyhow::Result<Pause> {
        self.inner.pause(reason).await
    }

    async fn resume(&self) -> anyhow::Result<Option<Pause>> {
        self.inner.resume().await
    }

    fn scope(&self) -> SwitchScope {
        self.inner.scope()
    }

    fn location(&self) -> String {
        format!("{}: {}", self.leg, self.inner.location())
    }

    fn remote(&self) -> bool {
        self.inner.remote()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::sim::{FleetSpec, SimCloud};

    fn leg(name: &str, seed: u64, budget: Option<Arc<Budget>>) -> Leg {
        let sim = SimCloud::new(FleetSpec::uniform(3, 2), seed)
            .unwrap_or_else(|err| panic!("{err}"))
            .as_account(name, "us-east-1");
        Leg::new(name, name, "us-east-1", Arc::new(sim), budget)
    }

    fn fan_out(legs: Vec<Leg>) -> FanOut {
        FanOut::new(legs, None, 4).unwrap_or_else(|err| panic!("{err}"))
    }

    #[tokio::test]
    async fn an_account_region_reached_twice_is_refused_not_counted_twice() {
        // The same fleet (same seed: the same instance ids) as two legs.
        let twice = fan_out(vec![leg("a", 7, None), leg("b", 7, None)]);
        match twice.instances(&InstanceQuery::default()).await {
            Err(CloudError::Refused(why)) => {
                assert!(
                    why.contains("reported by both a/us-east-1 and b/us-east-1"),
                    "{why}"
                );
            }
            other => panic!("not refused: {other:?}"),
        }
        let apart = fan_out(vec![leg("a", 7, None), leg("b", 8, None)]);
        let found = apart.instances(&InstanceQuery::default()).await;
        assert_eq!(found.map(|f| f.len()).ok(), Some(12));
    }

    #[tokio::test]
    async fn names_route_to_their_leg_and_answers_carry_its_prefix() {
        let both = fan_out(vec![leg("a", 7, None), leg("b", 8, None)]);
        let groups = both
            .groups(Some(&[
                "b/us-east-1/group-0001".to_owned(),
                "group-0002".to_owned(),
            ]))
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let names: Vec<&str> = groups.iter().map(|g| g.group.name.as_str()).collect();
        assert_eq!(names, ["b/us-east-1/group-0001"], "a bare name is no leg's");
        assert!(groups[0]
            .members
            .iter()
            .all(|m| m.zone.starts_with("b/us-east-1/us-east-1")));
        let of_b = both
            .instances(&InstanceQuery {
                groups: Some(BTreeSet::from(["b/us-east-1/group-0001".to_owned()])),
                ..InstanceQuery::default()
            })
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(of_b.len(), 2);
        let victim = of_b[0].id.clone();
        both.terminate(&victim, TerminateVia::Ec2)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        // Only b's fleet lost it.
        let a = both.legs[0]
            .cloud
            .instances_by_id(std::slice::from_ref(&victim))
            .await;
        assert_eq!(a.map(|f| f.len()).ok(), Some(0));
        let b = both.legs[1].cloud.instances_by_id(&[victim]).await;
        assert!(b.is_ok_and(|f| f.len() == 1 && f[0].is_going_away()));
    }

    #[tokio::test]
    async fn an_accounts_calls_wait_for_its_budget() {
        // 10 calls a second, shared by the account's two regions: 30
        // listings cannot take less than 2 s (10 at once, then 10 a second).
        let budget = super::budget(10);
        let both = fan_out(vec![leg("a", 7, budget.clone()), leg("b", 8, budget)]);
        let began = std::time::Instant::now();
        for _ in 0..15 {
            both.groups(None)
                .await
                .unwrap_or_else(|err| panic!("{err}"));
        }
        assert!(
            began.elapsed() >= std::time::Duration::from_millis(1_900),
            "30 calls at 10 a second took {:?}",
            began.elapsed()
        );
    }
}

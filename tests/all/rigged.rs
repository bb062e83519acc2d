//! A fake backend for rules a healthy simulator cannot exercise: the
//! simulated fleet underneath, with faults the test switches on, a record of
//! every call, and a `terminate` that reads the journal file before it acts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wasmonkey::cloud::sim::SimCloud;
use wasmonkey::cloud::{
    Cloud, CloudError, GroupSnapshot, Instance, InstanceQuery, InstanceState, Lifecycle, Millis,
    TerminateVia,
};
use wasmonkey::config::Config;
use wasmonkey::journal::{Entry, Event};
use wasmonkey::kill_switch::FileSwitch;
use wasmonkey::runner::{self, RunOptions, RunOutput};

use crate::support::Setup;

/// What the fake does differently from the fleet underneath.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// `list_groups` leaves this group out (its instances still name it).
    pub hidden_group: Option<String>,
    /// Every `list_instances` is throttled.
    pub throttle_listing: bool,
    /// `terminate` acts, then answers as if the connection dropped.
    pub lose_terminate_answer: bool,
    /// `terminate` acts, then answers throttled (the answer to the first
    /// attempt was lost, and the retries were throttled).
    pub throttle_after_terminate: bool,
    /// Every group read from this time on (the fleet's clock) is throttled.
    pub throttle_groups_from_ms: Option<Millis>,
    /// The kill switch of this state directory is set once the fleet's
    /// clock passes this time, as an operator's `wasmonkey pause` would.
    pub pause_at: Option<(Millis, PathBuf)>,
    /// Groups go on listing an instance this fake terminated as in service
    /// and healthy for this long, as an Auto Scaling group does between an
    /// EC2 termination and its next health check.
    pub groups_notice_after_ms: Option<Millis>,
}

/// The fake backend.
pub struct Rigged {
    pub sim: Arc<SimCloud>,
    faults: Faults,
    /// The journal `terminate` reads before it acts.
    journal: PathBuf,
    /// Every call, as `operation id-or-empty`, in order.
    pub calls: Mutex<Vec<String>>,
    /// For each `terminate`: the instance, and whether the journal's last
    /// line on disk was that instance's intent when the call came.
    pub intent_on_disk: Mutex<Vec<(String, bool)>>,
    /// When each instance was terminated, on the fleet's clock.
    terminated_at: Mutex<BTreeMap<String, Millis>>,
}

impl Rigged {
    /// The fleet `sim` with `faults`; `terminate` reads `journal`.
    pub fn new(sim: SimCloud, faults: Faults, journal: PathBuf) -> Rigged {
        Rigged {
            sim: Arc::new(sim),
            faults,
            journal,
            calls: Mutex::default(),
            intent_on_disk: Mutex::default(),
            terminated_at: Mutex::default(),
        }
    }

    fn note(&self, call: String) {
        self.calls.lock().expect("calls").push(call);
    }

    /// Calls made so far whose text starts with `prefix`.
    /// The calls after the run's survey of its scope (one listing of the
    /// groups, one of the instances, before anything else): the plugin's
    /// and the host's own for each decision.
    pub fn after_survey(&self) -> Vec<String> {
        let calls = self.calls.lock().expect("calls").clone();
        assert_eq!(
            calls.get(..2),
            Some(&["groups all".to_owned(), "list_instances".to_owned()][..]),
            "the run surveys its scope first: {calls:#?}"
        );
        calls[2..].to_vec()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.calls
            .lock()
            .expect("calls")
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    fn last_entry_is_intent_for(&self, id: &str) -> bool {
        let Ok(text) = std::fs::read_to_string(&self.journal) else {
            return false;
        };
        let Some(last) = text.lines().last() else {
            return false;
        };
        matches!(
            serde_json::from_str::<Entry>(last).map(|e| e.event),
            Ok(Event::TerminateIntent { instance_id, .. }) if instance_id == id
        )
    }
}

#[async_trait::async_trait]
impl Cloud for Rigged {
    fn kind(&self) -> &'static str {
        "sim"
    }
    fn now_ms(&self) -> Millis {
        self.sim.now_ms()
    }
    async fn sleep_ms(&self, ms: Millis) {
        self.sim.sleep_ms(ms).await;
        if let Some((at, dir)) = &self.faults.pause_at {
            if self.sim.now_ms() >= *at {
                let switch = FileSwitch::new(dir);
                if switch.paused().is_none() {
                    switch.pause("an operator paused mid-run").expect("pause");
                }
            }
        }
    }
    async fn groups(
        &self,
        names: Option<&[String]>,
    ) -> Result<Vec<Arc<GroupSnapshot>>, CloudError> {
        self.note(match names {
            None => "groups all".into(),
            Some(names) => format!("groups {}", names.join(",")),
        });
        if self
            .faults
            .throttle_groups_from_ms
            .is_some_and(|from| self.sim.now_ms() >= from)
        {
            return Err(CloudError::Throttled("Rate exceeded".into()));
        }
        let mut groups = self.sim.groups(names).await?;
        groups.retain(|g| Some(&g.group.name) != self.faults.hidden_group.as_ref());
        if let Some(lag) = self.faults.groups_notice_after_ms {
            let now = self.sim.now_ms();
            let terminated = self.terminated_at.lock().expect("terminations");
            for group in &mut groups {
                let mut unaware = GroupSnapshot::clone(group);
                for member in &mut unaware.members {
                    if terminated
                        .get(&member.id)
                        .is_some_and(|at| now < at.saturating_add(lag))
                    {
                        member.lifecycle = Lifecycle::InService;
                        member.healthy = true;
                    }
                }
                *group = Arc::new(unaware);
            }
        }
        Ok(groups)
    }
    async fn instances(&self, query: &InstanceQuery) -> Result<Vec<Instance>, CloudError> {
        self.note("list_instances".into());
        if self.faults.throttle_listing {
            return Err(CloudError::Throttled("Rate exceeded".into()));
        }
        self.sim.instances(query).await
    }
    async fn instances_by_id(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        self.note(format!("instances_by_id {}", ids.join(",")));
        self.sim.instances_by_id(ids).await
    }
    async fn terminate(
        &self,
        id: &str,
        via: TerminateVia,
    ) -> Result<Option<InstanceState>, CloudError> {
        self.note(format!("terminate {id}"));
        let on_disk = self.last_entry_is_intent_for(id);
        self.intent_on_disk
            .lock()
            .expect("intents")
            .push((id.to_owned(), on_disk));
        let answer = self.sim.terminate(id, via).await?;
        self.terminated_at
            .lock()
            .expect("terminations")
            .insert(id.to_owned(), self.sim.now_ms());
        if self.faults.lose_terminate_answer {
            return Err(CloudError::Backend(
                "dispatch failure: connection reset before the answer arrived".into(),
            ));
        }
        if self.faults.throttle_after_terminate {
            return Err(CloudError::Throttled(
                "ec2:TerminateInstances: RequestLimitExceeded: Request limit exceeded.".into(),
            ));
        }
        Ok(answer)
    }
    fn messaging(&self) -> &dyn wasmonkey::notify::Messaging {
        self.sim.messaging()
    }
}

/// Run a setup on a rigged simulated fleet; the journal goes to
/// `run.jsonl` in the setup's directory, where the fake reads it.
pub async fn run(
    setup: &Setup,
    seed: u64,
    execute: bool,
    faults: Faults,
) -> (RunOutput, Arc<Rigged>) {
    let config = Config::load(&setup.config).expect("config loads");
    let sim =
        SimCloud::from_fleet_file(&setup.dir.path().join("fleet.toml"), seed).expect("fleet loads");
    let journal = setup.dir.path().join("run.jsonl");
    let rigged = Arc::new(Rigged::new(sim, faults, journal.clone()));
    let options = RunOptions {
        config: setup.config.clone(),
        execute,
        journal: Some(journal),
        ..RunOptions::default()
    };
    let output = runner::run_on(
        &config,
        rigged.clone(),
        seed,
        &options,
        std::future::pending(),
    )
    .await
    .expect("run completes");
    (output, rigged)
}

//! The backend a config names: its one account and region, or, with
//! `[[account]]`, each account-region as a leg of one fan-out backend
//! (`cloud/fan_out.rs`), every leg's account checked before it is used.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::cloud::fan_out::{self, FanOut, Leg};
use crate::cloud::sim::{FleetSpec, SimCloud};
use crate::cloud::Cloud;
use crate::config::{account_regions, AccountRegion, BackendConfig, Config};

/// The backend a config names.
pub async fn backend(config: &Config, seed: u64) -> anyhow::Result<Arc<dyn Cloud>> {
    let named = |err: anyhow::Error| err.context(config.path.display().to_string());
    if !config.accounts.is_empty() {
        return Ok(Arc::new(fanned_out(config, seed).await.map_err(named)?));
    }
    Ok(match &config.backend {
        BackendConfig::Sim { fleet } => {
            Arc::new(SimCloud::from_fleet_file(&config.resolve(fleet), seed)?)
        }
        #[cfg(feature = "aws")]
        BackendConfig::Aws(settings) => Arc::new(
            crate::cloud::aws::AwsCloud::connect(settings)
                .await
                .map_err(named)?,
        ),
        #[cfg(not(feature = "aws"))]
        BackendConfig::Aws(_) => anyhow::bail!(without_aws(config)),
    })
}

#[cfg(not(feature = "aws"))]
fn without_aws(config: &Config) -> String {
    format!(
        "{}: backend kind = \"aws\" needs the AWS backend, which this build of wasmonkey leaves out; \
         build it with the default features (`cargo build -p wasmonkey`, or `cargo install --path host`)",
        config.path.display()
    )
}

/// Every account-region of the config as one backend, its accounts
/// checked.
async fn fanned_out(config: &Config, seed: u64) -> anyhow::Result<FanOut> {
    let reach = account_regions(&config.accounts);
    let budgets = Budgets::of(config, &reach);
    let fan_out = match &config.backend {
        BackendConfig::Sim { fleet } => {
            let fleets = sim_fleets(config, fleet, seed, &reach)?;
            sim_fan_out(config, &reach, &fleets, &budgets)?
        }
        #[cfg(feature = "aws")]
        BackendConfig::Aws(settings) => {
            use crate::cloud::aws::AwsCloud;
            use futures::StreamExt as _;
            let home = AwsCloud::connect(settings).await?;
            let base = settings.sdk_config().await;
            let built: Vec<anyhow::Result<Leg>> = futures::stream::iter(&reach)
                .map(|leg| {
                    let base = &base;
                    let budget = budgets.of_account(&leg.account);
                    async move {
                        let cloud =
                            AwsCloud::connect_leg(settings, base, &leg.region, leg.role.as_ref())
                                .await?;
                        let region = cloud.region().to_owned();
                        Ok(Leg::new(
                            &leg.name,
                            &leg.account,
                            &region,
                            Arc::new(cloud),
                            budget,
                        ))
                    }
                })
                .buffered(config.fan_out.workers.max(1))
                .collect()
                .await;
            let legs = built.into_iter().collect::<anyhow::Result<Vec<Leg>>>()?;
            FanOut::new(legs, Some(Arc::new(home)), config.fan_out.workers)?
        }
        #[cfg(not(feature = "aws"))]
        BackendConfig::Aws(_) => anyhow::bail!(without_aws(config)),
    };
    fan_out.check_accounts().await?;
    Ok(fan_out)
}

/// One budget per account, shared by its regions.
struct Budgets(BTreeMap<String, Arc<fan_out::Budget>>);

impl Budgets {
    fn of(config: &Config, reach: &[AccountRegion]) -> Budgets {
        let mut budgets = BTreeMap::new();
        if let Some(rate) = config.fan_out.budget(&config.backend) {
            for leg in reach {
                if !budgets.contains_key(&leg.account) {
                    if let Some(limiter) = fan_out::budget(rate) {
                        budgets.insert(leg.account.clone(), limiter);
                    }
                }
            }
        }
        Budgets(budgets)
    }

    fn of_account(&self, account: &str) -> Option<Arc<fan_out::Budget>> {
        self.0.get(account).cloned()
    }
}

/// A simulated backend and the fleets behind it, each with the prefix its
/// names carry in the backend's answers (empty for a run of one fleet).
pub struct Simulated {
    /// What runs act on.
    pub cloud: Arc<dyn Cloud>,
    /// Each simulated fleet, with its prefix.
    pub fleets: Vec<(String, Arc<SimCloud>)>,
}

/// The simulated backend of a config whose backend is `sim` at `fleet`,
/// for `simulate`: its one fleet, or one per account-region.
pub fn simulated(config: &Config, fleet: &Path, seed: u64) -> anyhow::Result<Simulated> {
    if config.accounts.is_empty() {
        let cloud = Arc::new(SimCloud::from_fleet_file(&config.resolve(fleet), seed)?);
        return Ok(Simulated {
            cloud: Arc::clone(&cloud) as Arc<dyn Cloud>,
            fleets: vec![(String::new(), cloud)],
        });
    }
    let reach = account_regions(&config.accounts);
    let budgets = Budgets::of(config, &reach);
    let fleets = sim_fleets(config, fleet, seed, &reach)?;
    let cloud = Arc::new(sim_fan_out(config, &reach, &fleets, &budgets)?);
    Ok(Simulated {
        cloud,
        fleets: reach
            .iter()
            .zip(fleets)
            .map(|(leg, fleet)| (format!("{}/{}/", leg.name, fleet.region()), fleet))
            .collect(),
    })
}

/// The fleet file once per account-region: its zones moved to the
/// region, its seed the account-region's own.
fn sim_fleets(
    config: &Config,
    fleet: &Path,
    seed: u64,
    reach: &[AccountRegion],
) -> anyhow::Result<Vec<Arc<SimCloud>>> {
    let path = config.resolve(fleet);
    let spec = FleetSpec::load(&path)?;
    reach
        .iter()
        .map(|leg| {
            let region = if leg.region.is_empty() {
                spec.region.clone()
            } else {
                leg.region.clone()
            };
            let cloud = SimCloud::new(
                spec.in_region(&region),
                leg_seed(seed, &leg.account, &region),
            )
            .map_err(|err| anyhow::anyhow!("{} in {region}: {err:#}", path.display()))?;
            Ok(Arc::new(cloud.as_account(&leg.account, &region)))
        })
        .collect()
}

fn sim_fan_out(
    config: &Config,
    reach: &[AccountRegion],
    fleets: &[Arc<SimCloud>],
    budgets: &Budgets,
) -> anyhow::Result<FanOut> {
    let legs = reach
        .iter()
        .zip(fleets)
        .map(|(leg, fleet)| {
            let region = fleet.region().to_owned();
            let cloud: Arc<dyn Cloud> = Arc::clone(fleet) as Arc<dyn Cloud>;
            Leg::new(
                &leg.name,
                &leg.account,
                &region,
                cloud,
                budgets.of_account(&leg.account),
            )
        })
        .collect();
    FanOut::new(legs, None, config.fan_out.workers)
}

/// Each simulated account-region's own seed, so that their fleets (and
/// instance ids) differ, the same for the same run seed.
fn leg_seed(seed: u64, account: &str, region: &str) -> u64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(account.as_bytes())
        .chain_update([0])
        .chain_update(region.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

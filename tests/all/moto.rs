//! A moto server (a real AWS API emulator) on loopback, one per test, with
//! an AWS fleet built in it through the real SDK.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
use aws_sdk_ec2::types::{RequestLaunchTemplateData, ResourceType, Tag, TagSpecification};
use wasmonkey::cloud::aws::AwsSettings;

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

/// The moto server executable: `WASMONKEY_MOTO` (set by `cargo xtask test`),
/// else `moto_server` on the PATH.
fn executable() -> String {
    std::env::var("WASMONKEY_MOTO").unwrap_or_else(|_| "moto_server".to_owned())
}

impl Moto {
    /// Start moto on a port of its own choosing and wait until it answers.
    /// (Picking a free port first would race with the other tests.)
    pub fn start() -> Moto {
        let mut child = Command::new(executable())
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {} ({err}): install moto with `python3 -m pip install 'moto[server]'` \
                     or run the tests with `cargo xtask test`, which does",
                    executable()
                )
            });
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Werkzeug announces "Running on http://127.0.0.1:PORT"; keep
        // draining afterwards so moto never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("Running on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("moto did not announce its port within 30 s");
            }
        };
        let moto = Moto { child, endpoint };
        let port = moto
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("a port");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }
}

impl Moto {
    /// Stop the server now, as a control plane that goes away mid-run.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SDK config for `endpoint` with static test credentials and the
/// host's own retry and timeout policy.
pub async fn sdk_config(endpoint: &str, settings: &AwsSettings) -> SdkConfig {
    loader(endpoint)
        .retry_config(settings.retry_config())
        .timeout_config(settings.timeout_config())
        .load()
        .await
}

/// The tests' own client for building the fleet and reading it back:
/// patient (moto loads its backends lazily) and never retrying, so a
/// creation is never sent twice.
pub async fn admin_config(endpoint: &str) -> SdkConfig {
    loader(endpoint)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}

fn loader(endpoint: &str) -> aws_config::ConfigLoader {
    let credentials =
        aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "wasmonkey-tests");
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
}

/// What the fleet in moto looks like.
pub struct Fleet {
    pub topic_arn: String,
    pub queue_url: String,
    pub standalone: String,
}

/// The tests' client as another account: moto's STS answers an
/// AssumeRole of any role with credentials that act in the role's account.
pub async fn as_account(admin: &SdkConfig, account: &str) -> SdkConfig {
    let assumed = aws_sdk_sts::Client::new(admin)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/setup"))
        .role_session_name("setup")
        .send()
        .await
        .expect("assume role")
        .credentials
        .expect("credentials");
    admin
        .to_builder()
        .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
            aws_sdk_ec2::config::Credentials::new(
                assumed.access_key_id(),
                assumed.secret_access_key(),
                Some(assumed.session_token().to_owned()),
                None,
                "other-account",
            ),
        ))
        .build()
}

/// The launch template every test group launches from.
pub async fn launch_template(sdk: &SdkConfig) {
    aws_sdk_ec2::Client::new(sdk)
        .create_launch_template()
        .launch_template_name("wasmonkey-test")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .expect("launch template");
}

/// Groups `web` (4) and `api` (3) opted in, `vault` (2) opted out, one
/// standalone instance, an SNS topic with an SQS subscription.
pub async fn build_fleet(sdk: &SdkConfig) -> Fleet {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let sns = aws_sdk_sns::Client::new(sdk);
    launch_template(sdk).await;
    for (name, size, tags) in [
        ("web", 4, OPTED_IN),
        ("api", 3, OPTED_IN),
        (
            "vault",
            2,
            &[("env", "test"), ("chaos-opt-out", "true")][..],
        ),
    ] {
        add_group(sdk, name, size, tags).await;
    }
    let standalone = ec2
        .run_instances()
        .image_id("ami-12c6146b")
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(Tag::builder().key("Name").value("bastion").build())
                .tags(Tag::builder().key("env").value("test").build())
                .build(),
        )
        .send()
        .await
        .expect("standalone instance")
        .instances()[0]
        .instance_id()
        .expect("id")
        .to_owned();
    let topic_arn = chaos_topic(sdk).await;
    let (queue_url, queue_arn) = new_queue(sdk, "chaos-inbox").await;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscription");
    Fleet {
        topic_arn,
        queue_url,
        standalone,
    }
}

/// The tags of an opted-in group.
pub const OPTED_IN: &[(&str, &str)] = &[("env", "test"), ("chaos", "opt-in")];

/// An Auto Scaling group of `size` instances over two zones, from the
/// fleet's launch template, with `tags` propagated to its instances.
pub async fn add_group(sdk: &SdkConfig, name: &str, size: i32, tags: &[(&str, &str)]) {
    aws_sdk_autoscaling::Client::new(sdk)
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_name("wasmonkey-test")
                .version("$Latest")
                .build(),
        )
        .min_size(1)
        .max_size(size + 2)
        .desired_capacity(size)
        .availability_zones("us-east-1a")
        .availability_zones("us-east-1b")
        .set_tags(Some(
            tags.iter()
                .map(|(key, value)| {
                    AsgTag::builder()
                        .key(*key)
                        .value(*value)
                        .propagate_at_launch(true)
                        .resource_id(name)
                        .resource_type("auto-scaling-group")
                        .build()
                })
                .collect(),
        ))
        .send()
        .await
        .expect("auto scaling group");
}

/// Every instance id with its state, read independently of the host.
pub async fn states(sdk: &SdkConfig) -> std::collections::BTreeMap<String, String> {
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let mut states = std::collections::BTreeMap::new();
    let out = ec2.describe_instances().send().await.expect("describe");
    for reservation in out.reservations() {
        for i in reservation.instances() {
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_default();
            states.insert(i.instance_id().unwrap_or_default().to_owned(), state);
        }
    }
    states
}

/// Instance ids of a group as its members are now.
pub async fn members(sdk: &SdkConfig, group: &str) -> Vec<String> {
    let asg = aws_sdk_autoscaling::Client::new(sdk);
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .expect("describe groups");
    let mut ids: Vec<String> = out.auto_scaling_groups()[0]
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

/// A new SQS queue: its URL and ARN.
async fn new_queue(sdk: &SdkConfig, name: &str) -> (String, String) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue arn");
    (queue_url, queue_arn)
}

/// The event bus `bus` with a rule that sends every `source = "wasmonkey"`
/// event to the new SQS queue `queue`; the queue's URL.
pub async fn bus_to_queue(sdk: &SdkConfig, bus: &str, queue: &str) -> String {
    let (queue_url, queue_arn) = new_queue(sdk, queue).await;
    let events = aws_sdk_eventbridge::Client::new(sdk);
    events
        .create_event_bus()
        .name(bus)
        .send()
        .await
        .expect("bus");
    events
        .put_rule()
        .name("wasmonkey-steps")
        .event_bus_name(bus)
        .event_pattern(r#"{"source": ["wasmonkey"]}"#)
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule("wasmonkey-steps")
        .event_bus_name(bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("target");
    queue_url
}

/// Every message the SNS topic delivered to the SQS queue.
pub async fn messages(sdk: &SdkConfig, queue_url: &str) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            return bodies;
        }
        bodies.extend(
            out.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
    }
}

/// The seed project's fleet: `groups` Auto Scaling groups of 3, `g0001`
/// on; the first ten tagged `chaos=opt-in`, the others `chaos=opt-out`.
/// With an SNS topic; its ARN is returned.
pub async fn seed_fleet(sdk: &SdkConfig, groups: usize) -> String {
    launch_template(sdk).await;
    for n in 1..=groups {
        let chaos = if n <= SEED_OPTED_IN {
            "opt-in"
        } else {
            "opt-out"
        };
        add_group(sdk, &format!("g{n:04}"), 3, &[("chaos", chaos)]).await;
    }
    chaos_topic(sdk).await
}

/// The SNS topic `chaos`; its ARN.
async fn chaos_topic(sdk: &SdkConfig) -> String {
    aws_sdk_sns::Client::new(sdk)
        .create_topic()
        .name("chaos")
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("arn")
        .to_owned()
}

/// How many groups of [`seed_fleet`] are opted in.
pub const SEED_OPTED_IN: usize = 10;

/// The seed experiment's run config for a [`seed_fleet`] behind `endpoint`:
/// classic-monkey, one victim in every opted-in group, the run's recovery
/// times in one notification.
pub fn seed_config(endpoint: &str, topic_arn: &str, plugins: &str, cache: &str) -> String {
    format!(
        "journal_dir = \"journal\"\nstate_dir = \"state\"\n\
         [backend]\nkind = \"aws\"\nendpoint_url = {endpoint:?}\nregion = \"us-east-1\"\n\
         attempt_timeout_secs = 60\n\
         [plugins]\ndir = {plugins:?}\ncache_dir = {cache:?}\n\
         [scope]\nopt_in = \"chaos=opt-in\"\n\
         [blast_radius]\nmax_terminations = {SEED_OPTED_IN}\nmin_healthy_per_group = 1\n\
         [channels.ops]\ntopic = {topic_arn:?}\n\
         [report]\nchannel = \"ops\"\n\
         [[experiment]]\nplugin = \"classic-monkey\"\ngrants = [\"terminate\"]\n\
         params = {{ probability = 1.0, poll-secs = 1, recovery-timeout-secs = 60 }}\n"
    )
}

//! What undoes a fault, exactly: the calls that restore what a fault of
//! contract 0.2 changed, and the command that does it by hand. The journal
//! and the state directory keep it; the run's fault ledger owes and carries it
//! out.

use serde::{Deserialize, Serialize};

use super::{Cloud, CloudError, ScalingProcess, SubnetAcl};

/// What undoes a fault, exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Undo {
    /// Start the instance the fault stopped.
    Start {
        /// The instance.
        instance_id: String,
    },
    /// Resume the processes the fault suspended (only those: what was
    /// suspended before it stays suspended).
    Resume {
        /// The group.
        group: String,
        /// The processes.
        processes: Vec<ScalingProcess>,
    },
    /// Move each subnet back behind the network ACL it had, and delete the
    /// deny-all ACL the fault created (found by its tag, so an ACL created
    /// just before a crash is found too).
    Restore {
        /// Each subnet with its ACL before the fault.
        subnets: Vec<SubnetAcl>,
        /// The `wasmonkey:fault` tag of the deny-all ACL.
        tag: String,
    },
}

impl Undo {
    /// Carry it out; what was done, in words. A target that is gone (the
    /// group replaced the stopped instance, the group was deleted) leaves
    /// nothing to undo.
    pub(crate) async fn carry_out(&self, cloud: &dyn Cloud) -> Result<String, CloudError> {
        let answer = match self {
            Undo::Start { instance_id } => cloud.start_instance(instance_id).await,
            Undo::Resume { group, processes } => cloud.resume_processes(group, processes).await,
            Undo::Restore { subnets, tag } => cloud.restore_subnets(subnets, tag).await,
        };
        match answer {
            Ok(()) => Ok(self.done()),
            Err(CloudError::NotFound(why)) => Ok(format!("nothing to undo: {why}")),
            Err(err) => Err(err),
        }
    }

    /// What it did, in words.
    fn done(&self) -> String {
        match self {
            Undo::Start { instance_id } => format!("started {instance_id}"),
            Undo::Resume { group, processes } => {
                format!("resumed {} on {group}", process_names(processes, ", "))
            }
            Undo::Restore { subnets, .. } => format!(
                "restored the network ACL of {}",
                subnets
                    .iter()
                    .map(|s| s.subnet.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The command that finishes it by hand.
    pub fn manual(&self) -> String {
        match self {
            Undo::Start { instance_id } => {
                format!("aws ec2 start-instances --instance-ids {instance_id}")
            }
            Undo::Resume { group, processes } => {
                let (place, group) = located(group);
                in_place(
                    place,
                    format!(
                        "aws autoscaling resume-processes --auto-scaling-group-name {group} --scaling-processes {}",
                        process_names(processes, " ")
                    ),
                )
            }
            Undo::Restore { subnets, tag } => {
                let mut place = None;
                let mut steps: Vec<String> = subnets
                    .iter()
                    .map(|s| {
                        let (at, subnet) = located(&s.subnet);
                        let (_, acl) = located(&s.acl);
                        place = place.or(at);
                        format!(
                            "aws ec2 replace-network-acl-association --network-acl-id {acl} --association-id \"$(aws ec2 describe-network-acls --filters Name=association.subnet-id,Values={subnet} --query 'NetworkAcls[].Associations[?SubnetId==`{subnet}`].NetworkAclAssociationId' --output text)\""
                        )
                    })
                    .collect();
                steps.push(format!(
                    "for acl in $(aws ec2 describe-network-acls --filters Name=tag:wasmonkey:fault,Values={tag} --query 'NetworkAcls[].NetworkAclId' --output text); do aws ec2 delete-network-acl --network-acl-id \"$acl\"; done"
                ));
                in_place(place, steps.join(" && "))
            }
        }
    }
}

/// A name a run over several accounts gave (`ACCOUNT/REGION/ID`, see
/// `cloud/fan_out.rs`): the account and region, and the id AWS knows; any
/// other name is AWS's own (a group's name may hold `/` too, so the middle
/// part must be a region AWS has).
fn located(name: &str) -> (Option<(&str, &str)>, &str) {
    let mut parts = name.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(account), Some(region), Some(id))
            if super::aws_settings::KNOWN_REGIONS.contains(&region) =>
        {
            (Some((account, region)), id)
        }
        _ => (None, name),
    }
}

/// `command` to run in `place`'s account and region, when it has one.
fn in_place(place: Option<(&str, &str)>, command: String) -> String {
    match place {
        Some((account, region)) => format!(
            "with account {account}'s credentials (its role): export AWS_REGION={region} && {command}"
        ),
        None => command,
    }
}

fn process_names(processes: &[ScalingProcess], sep: &str) -> String {
    processes
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_by_hand_undo_names_aws_ids_and_the_account_region_of_a_fan_out_run() {
        let resume = Undo::Resume {
            group: "payments/eu-west-1/web".into(),
            processes: vec![ScalingProcess::Launch],
        };
        assert_eq!(
            resume.manual(),
            "with account payments's credentials (its role): export AWS_REGION=eu-west-1 && aws autoscaling resume-processes --auto-scaling-group-name web --scaling-processes Launch"
        );
        let restore = Undo::Restore {
            subnets: vec![SubnetAcl {
                subnet: "payments/eu-west-1/subnet-1".into(),
                vpc: "payments/eu-west-1/vpc-1".into(),
                acl: "payments/eu-west-1/acl-1".into(),
            }],
            tag: "t".into(),
        };
        let manual = restore.manual();
        assert!(
            manual.starts_with(
                "with account payments's credentials (its role): export AWS_REGION=eu-west-1 && "
            ),
            "{manual}"
        );
        assert!(manual.contains("--network-acl-id acl-1 "), "{manual}");
        assert!(!manual.contains("payments/"), "{manual}");
        // One account's own names are AWS's, unchanged.
        let own = Undo::Resume {
            group: "web".into(),
            processes: vec![ScalingProcess::Launch],
        };
        assert!(
            own.manual().starts_with("aws autoscaling"),
            "{}",
            own.manual()
        );
        let slashed = Undo::Resume {
            group: "team/app/web".into(),
            processes: vec![ScalingProcess::Launch],
        };
        assert!(
            slashed
                .manual()
                .contains("--auto-scaling-group-name team/app/web "),
            "{}",
            slashed.manual()
        );
    }
}

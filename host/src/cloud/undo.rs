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
            Undo::Resume { group, processes } => format!(
                "aws autoscaling resume-processes --auto-scaling-group-name {group} --scaling-processes {}",
                process_names(processes, " ")
            ),
            Undo::Restore { subnets, tag } => {
                let mut steps: Vec<String> = subnets
                    .iter()
                    .map(|s| {
                        format!(
                            "aws ec2 replace-network-acl-association --network-acl-id {} --association-id \"$(aws ec2 describe-network-acls --filters Name=association.subnet-id,Values={} --query 'NetworkAcls[].Associations[?SubnetId==`{}`].NetworkAclAssociationId' --output text)\"",
                            s.acl, s.subnet, s.subnet
                        )
                    })
                    .collect();
                steps.push(format!(
                    "for acl in $(aws ec2 describe-network-acls --filters Name=tag:wasmonkey:fault,Values={tag} --query 'NetworkAcls[].NetworkAclId' --output text); do aws ec2 delete-network-acl --network-acl-id \"$acl\"; done"
                ));
                steps.join(" && ")
            }
        }
    }
}

fn process_names(processes: &[ScalingProcess], sep: &str) -> String {
    processes
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(sep)
}

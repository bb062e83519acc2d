"""The seed project's Chaos Monkey as a plain boto3 script, for the API
benchmark to run beside wasmonkey on the same moto fleet: one random
in-service, healthy victim in every group tagged chaos=opt-in, wait until
every group is healthy again, one SNS message with every recovery time.

Usage: python seed_monkey.py ENDPOINT_URL
"""

import random
import sys
import time

import boto3

endpoint = sys.argv[1]
session = boto3.session.Session(
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
    region_name="us-east-1",
)
asg = session.client("autoscaling", endpoint_url=endpoint)
ec2 = session.client("ec2", endpoint_url=endpoint)
sns = session.client("sns", endpoint_url=endpoint)


def groups(names=None):
    pages = asg.get_paginator("describe_auto_scaling_groups")
    args = {"AutoScalingGroupNames": names} if names else {"MaxRecords": 100}
    return [g for page in pages.paginate(**args) for g in page["AutoScalingGroups"]]


def opted_in(group):
    return any(t["Key"] == "chaos" and t["Value"] == "opt-in" for t in group["Tags"])


def recovered(group, victim):
    members = group["Instances"]
    return (
        all(m["InstanceId"] != victim for m in members)
        and len(members) == group["DesiredCapacity"]
        and all(
            m["LifecycleState"] == "InService" and m["HealthStatus"] == "Healthy"
            for m in members
        )
    )


victims = {}
started = {}
for group in groups():
    if not opted_in(group):
        continue
    pool = [
        m["InstanceId"]
        for m in group["Instances"]
        if m["LifecycleState"] == "InService" and m["HealthStatus"] == "Healthy"
    ]
    if not pool:
        continue
    victim = random.choice(pool)
    ec2.terminate_instances(InstanceIds=[victim])
    victims[group["AutoScalingGroupName"]] = victim
    started[group["AutoScalingGroupName"]] = time.monotonic()

recovery = {}
deadline = time.monotonic() + 900
while len(recovery) < len(victims) and time.monotonic() < deadline:
    waiting = [name for name in victims if name not in recovery]
    for group in groups(waiting):
        name = group["AutoScalingGroupName"]
        if recovered(group, victims[name]):
            recovery[name] = time.monotonic() - started[name]
    if len(recovery) < len(victims):
        time.sleep(1)

topic = next(
    t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":chaos")
)
lines = [
    f"{name}: {victims[name]} recovered in {recovery[name]:.1f} s"
    if name in recovery
    else f"{name}: {victims[name]} not recovered"
    for name in sorted(victims)
]
sns.publish(TopicArn=topic, Subject="chaos monkey", Message="\n".join(lines))
print(f"{len(victims)} victims, {len(recovery)} recovered")

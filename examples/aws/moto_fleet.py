#!/usr/bin/env python3
"""Build a small Auto Scaling fleet in a moto server, for the walk-through
in docs/aws.md: groups `web` (4) and `api` (3) opted in, `vault` (2) opted out,
an SNS topic `chaos` with an SQS queue subscribed so messages can be read back.

    python3 examples/aws/moto_fleet.py http://127.0.0.1:5000
"""
import sys

import boto3

endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
ec2 = session.client("ec2", endpoint_url=endpoint)
asg = session.client("autoscaling", endpoint_url=endpoint)
sns = session.client("sns", endpoint_url=endpoint)
sqs = session.client("sqs", endpoint_url=endpoint)

ec2.create_launch_template(
    LaunchTemplateName="demo", LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"}
)
for name, size, tags in [
    ("web", 4, {"env": "demo", "chaos": "opt-in"}),
    ("api", 3, {"env": "demo", "chaos": "opt-in"}),
    ("vault", 2, {"env": "demo", "chaos-opt-out": "true"}),
]:
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": "demo", "Version": "$Latest"},
        MinSize=1,
        MaxSize=size + 2,
        DesiredCapacity=size,
        AvailabilityZones=["us-east-1a", "us-east-1b"],
        Tags=[
            {"Key": k, "Value": v, "PropagateAtLaunch": True, "ResourceId": name, "ResourceType": "auto-scaling-group"}
            for k, v in tags.items()
        ],
    )
topic = sns.create_topic(Name="chaos")["TopicArn"]
queue = sqs.create_queue(QueueName="chaos-inbox")["QueueUrl"]
queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
print(f"fleet ready: topic {topic}, queue {queue}")

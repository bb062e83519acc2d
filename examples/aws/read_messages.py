#!/usr/bin/env python3
"""Print the SNS messages that reached the walk-through's SQS queue."""
import sys

import boto3

endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
sqs = session.client("sqs", endpoint_url=endpoint)
queue = sqs.get_queue_url(QueueName="chaos-inbox")["QueueUrl"]
while True:
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    if not messages:
        break
    for message in messages:
        print(message["Body"], end="\n---\n")

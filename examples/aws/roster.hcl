# roster.hcl: a cluster on AWS. The queues are Amazon SQS, the machines EC2
# instances, the logs of torn-down servers go to S3. docs/aws.md walks
# through the setup; replace the ids, the account (111122223333), the
# bucket and the digest with yours.

cluster  = "demo" # queues demo-*, instances tagged roster:cluster = demo
data_dir = "/var/lib/roster-orchestrator"
spares   = 1 # one machine idles warm on the spares queue
roles    = ["roles/*.hcl"]

queue "sqs" {
  region = "us-east-1"
}

provider "ec2" {
  region                  = "us-east-1"
  launch_template         = "roster-agent" # AMI, instance type, volumes, metadata options
  launch_template_version = "$Default"
  # Machines spread over these subnets; one without capacity is skipped.
  subnets          = ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb", "subnet-0cccccccccccccccc"]
  security_groups  = ["sg-0123456789abcdef0"]
  instance_profile = "roster-agent" # iam/agent-policy.json on its role
  tags             = { team = "web" }

  # spot { max_price = "0.0125" }  # one-time Spot instances, if interruptions are fine

  bootstrap {
    roster_url = "s3://demo-roster-artifacts/roster/v0.1.0/roster-linux-amd64"
    # sha256sum roster-linux-amd64
    roster_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
    # A SecureString holding fleet.key (docs/aws.md, step 2).
    fleet_key_parameter = "/roster/demo/fleet-key"
  }
}

balancer "haproxy" "front" {
  frontend = "0.0.0.0:8080"
}

logs {
  destination = "s3://demo-roster-logs/roster/demo"
}

api {
  address = "127.0.0.1:7070"
}

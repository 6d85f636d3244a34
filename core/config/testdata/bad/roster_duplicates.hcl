roles = []

queue "local" {}
queue "sqs" {
  region = "us-east-1"
}

provider "local" {}
provider "ec2" {}

balancer "haproxy" "front" {}
balancer "file" "front" {}

logs {
  destination = "file://logs"
}
logs {
  destination = "file://other"
}

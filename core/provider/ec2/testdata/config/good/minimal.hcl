provider "ec2" {
  launch_template = "lt-0123456789abcdef0"

  bootstrap {
    roster_url          = "s3://roster-artifacts/roster"
    roster_sha256       = "abababababababababababababababababababababababababababababababab"
    fleet_key_parameter = "roster-fleet-key"
  }
}

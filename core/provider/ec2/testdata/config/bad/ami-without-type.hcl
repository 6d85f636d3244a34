provider "ec2" {
  ami = "ami-0abcdef1234567890"
  bootstrap {
    roster_url          = "s3://b/roster"
    roster_sha256       = "abababababababababababababababababababababababababababababababab"
    fleet_key_parameter = "/roster/demo/fleet-key"
  }
}

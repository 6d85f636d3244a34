provider "ec2" {
}

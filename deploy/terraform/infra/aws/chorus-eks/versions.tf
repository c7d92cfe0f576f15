# Every provider pinned to one version (terraform init writes .terraform.lock.hcl with their checksums; commit it
# next to your tfvars). The module versions are pinned where they are called.
terraform {
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "6.28.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "3.1.2"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "3.2.1"
    }
    # Used by terraform-aws-modules/eks (the OIDC thumbprint and its waits).
    tls = {
      source  = "hashicorp/tls"
      version = "4.2.1"
    }
    time = {
      source  = "hashicorp/time"
      version = "0.14.0"
    }
  }
}

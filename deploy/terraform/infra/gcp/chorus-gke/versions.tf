# Every provider pinned to one version (terraform init writes .terraform.lock.hcl with their checksums; commit it
# next to your tfvars). The module versions are pinned where they are called.
terraform {
  required_version = ">= 1.9.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "7.17.0"
    }
    # Used by terraform-google-modules/network.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "7.17.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "3.1.2"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "3.2.1"
    }
    # Used by terraform-google-modules/kubernetes-engine.
    random = {
      source  = "hashicorp/random"
      version = "3.8.1"
    }
  }
}

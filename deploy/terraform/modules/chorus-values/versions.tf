# No providers and no remote modules: `terraform init` and `terraform test` run offline. Validation blocks that
# refer to other variables need Terraform 1.9 or later.
terraform {
  required_version = ">= 1.9.0"
}

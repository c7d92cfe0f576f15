# The values built from the AWS example. Run from deploy/terraform/modules/chorus-values:
#   terraform test -filter=tests/aws.tftest.hcl -var-file=../../aws-terraform.tfvars.example
# (the example's values are the test's variables; each run below changes only what it names).

variables {
  platform = "aws"
}

run "aws_example_values" {
  command = plan

  assert {
    condition     = output.values.workers == var.workers
    error_message = "workers must reach the chart unchanged."
  }
  assert {
    condition = (output.values.workers[0].workerArgs.gpuType == "nvidia.com/gpu" && output.values.workers[0].workerArgs.capacity == 16
    && output.values.workers[0].workerArgs.operation == "TTS" && output.values.workers[0].workerArgs.image == "chorus-cuda")
    error_message = "the example's GPU pool (gpuType nvidia.com/gpu, capacity 16, operation TTS, image chorus-cuda) is not in the values."
  }
  assert {
    condition     = yamldecode(output.values_yaml).workers[0].autoscaling.threshold == "0.6" && yamldecode(output.values_yaml).workers[0].autoscaling.enabled
    error_message = "the threshold must reach the chart as the string \"0.6\", with autoscaling enabled."
  }
  assert {
    condition     = output.values.clusterName == "chorus-prod" && output.values.infra.provider == "aws" && output.values.infra.authenticate
    error_message = "clusterName, infra.provider or infra.authenticate is wrong."
  }
  assert {
    condition = (output.values.infra.imageRegistry == "123456789012.dkr.ecr.us-west-2.amazonaws.com/chorus"
    && output.values.release.releaseTag == "chorus-20260301" && output.values.infra.serviceAccount.name == "chorus-sa" && output.values.infra.serviceAccount.create)
    error_message = "imageRegistry, releaseTag or serviceAccount is wrong."
  }
  assert {
    condition = jsonencode(output.values.ingress) == jsonencode({
      enabled        = true
      routes         = ["tts.example.com"]
      certificateArn = "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
    })
    error_message = "the ALB ingress values (route, certificate ARN, no static IP) are wrong."
  }
  assert {
    condition     = output.values.metrics.enabled && output.values.filesystem.storageClass.name == "gp3" && output.values.licenseProxy.persistence.enabled
    error_message = "metrics, the gp3 StorageClass or the license proxy's persistence is wrong."
  }
  assert {
    condition = (output.values.artifacts.location == "s3://chorus-prod-chorus-artifacts-us-west-2/chorus"
      && output.values.artifacts.hotReload && jsonencode(output.values.artifacts.extraEnv) == jsonencode({ AWS_REGION = "us-west-2" })
    && output.artifact_bucket == "chorus-prod-chorus-artifacts-us-west-2")
    error_message = "the S3 artifact store values are wrong."
  }
  assert {
    condition = (jsonencode(output.eks_managed_node_groups.gpu.labels) == jsonencode({ "nvidia.com/gpu.present" = "true" })
      && output.eks_managed_node_groups.gpu.ami_type == "AL2023_x86_64_NVIDIA"
      && output.eks_managed_node_groups.gpu.taints.gpu.effect == "NO_SCHEDULE"
      && output.eks_managed_node_groups.gpu.block_device_mappings.xvda.ebs.volume_size == 200
    && output.eks_managed_node_groups.gpu.block_device_mappings.xvda.ebs.encrypted)
    error_message = "the gpu node group must be labelled nvidia.com/gpu.present=true, tainted, with an encrypted 200 GiB volume."
  }
  assert {
    condition = (length(output.eks_managed_node_groups.default.labels) == 0 && output.eks_managed_node_groups.default.min_size == 2
      && output.eks_managed_node_groups.default.name == "chorus-prod-default"
    && output.eks_managed_node_groups.default.metadata_options.http_tokens == "required")
    error_message = "the default node group is wrong."
  }
  assert {
    condition     = output.gpu_nodes && length(output.gke_node_pools) == 0 && output.ingress_static_ip_name == ""
    error_message = "an AWS cluster with a gpu group has GPU nodes and no GKE pools or static IP."
  }
  assert {
    condition     = jsonencode(yamldecode(nonsensitive(output.license_values_yaml))) == jsonencode({ licenseProxy = {} })
    error_message = "connected mode without a seed has no license values."
  }
}

run "aws_gpu_label_added_when_left_out" {
  command = plan

  variables {
    node_groups = {
      default = { ami_type = "AL2023_x86_64_STANDARD", instance_types = ["m6i.large"], min_size = 1, max_size = 2, desired_size = 1 }
      gpu     = { ami_type = "AL2023_x86_64_NVIDIA", instance_types = ["g5.xlarge"], min_size = 0, max_size = 3, desired_size = 0 }
    }
  }

  assert {
    condition     = jsonencode(output.eks_managed_node_groups.gpu.labels) == jsonencode({ "nvidia.com/gpu.present" = "true" }) && output.eks_managed_node_groups.gpu.block_device_mappings.xvda.ebs.volume_size == 100
    error_message = "an NVIDIA group gets the nvidia.com/gpu.present label (which the chart's GPU pools select) and a 100 GiB default volume."
  }
}

run "aws_without_hot_reload_or_ingress" {
  command = plan

  variables {
    enable_hot_reload = false
    enable_ingress    = false
    ingress_route     = ""
    certificate_arn   = ""
  }

  assert {
    condition     = jsonencode(output.values.artifacts) == jsonencode({ location = "" }) && output.artifact_bucket == "" && output.artifacts_location == ""
    error_message = "without enable_hot_reload there is no bucket and no artifacts.location."
  }
  assert {
    condition     = jsonencode(output.values.ingress) == jsonencode({ enabled = false, routes = [], certificateArn = "" })
    error_message = "without enable_ingress the chart renders no Ingress."
  }
}

run "aws_air_gapped_license" {
  command = plan

  variables {
    license_mode         = "air-gapped"
    license_seed         = "{\"license_id\": \"lic-1\", \"signature\": \"c2ln\"}"
    license_trusted_keys = ["MCowBQYDK2VwAyEAbX6Ih0aZ+ZqXJ1c0gq0uTg3mF1Y="]
  }

  assert {
    condition     = !output.values.infra.authenticate && output.values.licenseProxy.persistence.enabled
    error_message = "air-gapped mode is infra.authenticate = false with a persistent license proxy."
  }
  assert {
    condition = jsonencode(yamldecode(nonsensitive(output.license_values_yaml))) == jsonencode({
      licenseProxy = {
        seedLicense = "{\"license_id\": \"lic-1\", \"signature\": \"c2ln\"}"
        trustedKeys = ["MCowBQYDK2VwAyEAbX6Ih0aZ+ZqXJ1c0gq0uTg3mF1Y="]
      }
    })
    error_message = "the seed license and the trusted keys go to the chart in the sensitive values document."
  }
  assert {
    condition     = !strcontains(output.values_yaml, "lic-1") && !strcontains(output.values_yaml, "MCowBQYDK2VwAyEA")
    error_message = "license secrets must stay out of the readable values document."
  }
}

run "aws_irsa_annotation_and_release_name" {
  command = plan

  variables {
    release_name                = "tts"
    service_account_annotations = { "eks.amazonaws.com/role-arn" = "arn:aws:iam::123456789012:role/chorus-prod-chorus-artifacts" }
  }

  assert {
    condition = jsonencode(output.values.infra.serviceAccount) == jsonencode({
      annotations = { "eks.amazonaws.com/role-arn" = "arn:aws:iam::123456789012:role/chorus-prod-chorus-artifacts" }
      create      = true
      name        = "tts-sa"
    })
    error_message = "the chart creates the pods' ServiceAccount with the IRSA role the root made."
  }
  assert {
    condition     = output.ingress_name == "tts-chorus" && output.service_account_name == "tts-sa"
    error_message = "the Ingress is named after the chart's full name (release tts: tts-chorus)."
  }
}

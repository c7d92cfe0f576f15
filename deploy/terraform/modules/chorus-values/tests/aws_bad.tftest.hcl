# Bad variables are refused at plan, each by its own validation block. Run from deploy/terraform/modules/chorus-values:
#   terraform test -filter=tests/aws_bad.tftest.hcl -var-file=../../aws-terraform.tfvars.example
# Every run starts from the (valid) AWS example and breaks one thing. `expect_failures` passes only if the named
# variable's validation fails and nothing else does; deploy/terraform/tests also plans each run and checks that the
# message is the one its `# expect:` comment gives (a variable has several validation blocks).

variables {
  platform = "aws"
}

# expect: enable_pod_autoscaler needs enable_metrics = true
run "pod_autoscaler_without_metrics" {
  command = plan
  variables {
    enable_metrics = false
  }
  expect_failures = [var.enable_pod_autoscaler]
}

# expect: a pool with autoscaling.enabled needs enable_pod_autoscaler = true (KEDA)
run "worker_autoscaling_without_pod_autoscaler" {
  command = plan
  variables {
    enable_pod_autoscaler = false
  }
  expect_failures = [var.workers]
}

# expect: a GPU pool (workerArgs.image chorus-cuda) needs workerArgs.gpuType = "nvidia.com/gpu"
run "gpu_pool_without_gpu_type" {
  command = plan
  variables {
    workers = [{
      name        = "tts-worker"
      workerArgs  = { model = "en_US-joe-medium", image = "chorus-cuda", capacity = 16 }
      autoscaling = { enabled = true, threshold = "0.6", minReplicas = 1, maxReplicas = 10 }
    }]
  }
  expect_failures = [var.workers]
}

# expect: workerArgs.gpuType is the extended resource each pod requests
run "gpu_type_as_an_accelerator_model" {
  command = plan
  variables {
    workers = [{
      name       = "tts-worker"
      workerArgs = { model = "en_US-joe-medium", image = "chorus-cuda", gpuType = "nvidia-a10g", capacity = 16 }
    }]
  }
  expect_failures = [var.workers]
}

# expect: needs a GPU node group (AWS: ami_type AL2023_x86_64_NVIDIA)
run "gpu_pool_without_gpu_nodes" {
  command = plan
  variables {
    node_groups = {
      default = { ami_type = "AL2023_x86_64_STANDARD", instance_types = ["m6i.xlarge"], min_size = 2, max_size = 4, desired_size = 2 }
    }
  }
  expect_failures = [var.workers]
}

# expect: autoscaling.threshold (target pool utilisation) must be a number in (0, 1]
run "threshold_above_one" {
  command = plan
  variables {
    workers = [{
      name        = "tts-worker"
      workerArgs  = { model = "en_US-joe-medium", image = "chorus-cuda", gpuType = "nvidia.com/gpu", capacity = 16 }
      autoscaling = { enabled = true, threshold = "1.5" }
    }]
  }
  expect_failures = [var.workers]
}

# expect: 0 <= minReplicas <= maxReplicas
run "min_replicas_above_max" {
  command = plan
  variables {
    workers = [{
      name        = "tts-worker"
      workerArgs  = { model = "en_US-joe-medium", image = "chorus-cuda", gpuType = "nvidia.com/gpu", capacity = 16 }
      autoscaling = { enabled = true, minReplicas = 5, maxReplicas = 2 }
    }]
  }
  expect_failures = [var.workers]
}

# expect: workerArgs.capacity (concurrent streams per worker) must be a whole number, at least 1
run "capacity_zero" {
  command = plan
  variables {
    workers = [{ name = "tts-worker", workerArgs = { model = "en_US-joe-medium", capacity = 0 } }]
  }
  expect_failures = [var.workers]
}

# expect: useLora must be false
run "lora" {
  command = plan
  variables {
    workers = [{ name = "tts-worker", workerArgs = { model = "en_US-joe-medium", capacity = 4, useLora = true } }]
  }
  expect_failures = [var.workers]
}

# expect: pool names must be unique
run "duplicate_worker_names" {
  command = plan
  variables {
    workers = [
      { name = "tts", workerArgs = { model = "en_US-joe-medium", capacity = 4 } },
      { name = "tts", workerArgs = { model = "en_US-amy-medium", capacity = 4 } },
    ]
  }
  expect_failures = [var.workers]
}

# expect: 0 <= min_size <= desired_size <= max_size and max_size >= 1; wrong in: gpu.
run "node_group_min_size_above_max_size" {
  command = plan
  variables {
    node_groups = {
      default = { ami_type = "AL2023_x86_64_STANDARD", instance_types = ["m6i.xlarge"], min_size = 2, max_size = 4, desired_size = 2 }
      gpu     = { ami_type = "AL2023_x86_64_NVIDIA", instance_types = ["g6.xlarge"], min_size = 5, max_size = 2, desired_size = 2 }
    }
  }
  expect_failures = [var.node_groups]
}

# expect: GPU instances (g4dn, g5, g6, g6e, gr6, p4d, p5 families) exactly in the groups with an NVIDIA ami_type
run "gpu_instances_on_the_standard_ami" {
  command = plan
  variables {
    node_groups = {
      default = { ami_type = "AL2023_x86_64_STANDARD", instance_types = ["m6i.xlarge"], min_size = 2, max_size = 4, desired_size = 2 }
      gpu     = { ami_type = "AL2023_x86_64_STANDARD", instance_types = ["g6.xlarge"], min_size = 1, max_size = 2, desired_size = 1 }
    }
    workers = [{ name = "tts", workerArgs = { model = "en_US-joe-medium", capacity = 4 } }]
  }
  expect_failures = [var.node_groups]
}

# expect: node_groups needs a group without GPUs and without NoSchedule/NoExecute taints
run "no_untainted_cpu_group" {
  command = plan
  variables {
    node_groups = {
      gpu = { ami_type = "AL2023_x86_64_NVIDIA", instance_types = ["g6.xlarge"], min_size = 1, max_size = 2, desired_size = 1 }
    }
  }
  expect_failures = [var.node_groups]
}

# expect: ingress_route is empty but enable_ingress = true
run "ingress_without_route" {
  command = plan
  variables {
    ingress_route = ""
  }
  expect_failures = [var.ingress_route]
}

# expect: ingress_route must be a DNS hostname
run "ingress_route_with_scheme" {
  command = plan
  variables {
    ingress_route = "https://tts.example.com"
  }
  expect_failures = [var.ingress_route]
}

# expect: ACM certificate ARN in the cluster's region
run "certificate_in_another_region" {
  command = plan
  variables {
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
  }
  expect_failures = [var.certificate_arn]
}

# expect: and not "latest"
run "release_tag_latest" {
  command = plan
  variables {
    release_tag = "latest"
  }
  expect_failures = [var.release_tag]
}

# expect: at least 1.31
run "old_kubernetes" {
  command = plan
  variables {
    kubernetes_version = "1.29"
  }
  expect_failures = [var.kubernetes_version]
}

# expect: eks_admin_users must be IAM ARNs
run "admin_user_not_an_arn" {
  command = plan
  variables {
    eks_admin_users = ["alice"]
  }
  expect_failures = [var.eks_admin_users]
}

# expect: license_mode = "air-gapped" needs license_trusted_keys
run "air_gapped_without_trusted_keys" {
  command = plan
  variables {
    license_mode = "air-gapped"
  }
  expect_failures = [var.license_trusted_keys]
}

# expect: license_seed must be empty or a license
run "seed_license_not_json" {
  command = plan
  variables {
    license_seed = "not a license"
  }
  expect_failures = [var.license_seed]
}

# expect: on GCP only
run "gcp_static_ip_on_aws" {
  command = plan
  variables {
    ingress_static_ip_name = "chorus-ip"
  }
  expect_failures = [var.ingress_static_ip_name]
}

# Bad GCP variables are refused at plan. Run from deploy/terraform/modules/chorus-values:
#   terraform test -filter=tests/gcp_bad.tftest.hcl -var-file=../../gcp-terraform.tfvars.example
# As in aws_bad.tftest.hcl: one thing broken per run, its `# expect:` message checked by deploy/terraform/tests.

variables {
  platform = "gcp"
}

# expect: enable_pod_autoscaler needs enable_metrics = true
run "pod_autoscaler_without_metrics" {
  command = plan
  variables {
    enable_metrics = false
  }
  expect_failures = [var.enable_pod_autoscaler]
}

# expect: a GPU pool (workerArgs.image chorus-cuda) needs workerArgs.gpuType = "nvidia.com/gpu"
run "gpu_pool_without_gpu_type" {
  command = plan
  variables {
    workers = [{ name = "tts-worker", workerArgs = { model = "en_US-joe-medium", image = "chorus-cuda", capacity = 16 } }]
  }
  expect_failures = [var.workers]
}

# expect: or node pool (GCP: accelerator_type and accelerator_count)
run "gpu_pool_without_accelerator_nodes" {
  command = plan
  variables {
    node_pools = {
      default = { machine_type = "e2-standard-4", min_count = 1, max_count = 3, initial_node_count = 2 }
    }
  }
  expect_failures = [var.workers]
}

# expect: 0 <= min_count <= initial_node_count <= max_count and max_count >= 1; wrong in: gpu.
run "node_pool_min_count_above_max_count" {
  command = plan
  variables {
    node_pools = {
      default = { machine_type = "e2-standard-4", min_count = 1, max_count = 3, initial_node_count = 2 }
      gpu = {
        machine_type = "g2-standard-8", accelerator_type = "nvidia-l4", accelerator_count = 1
        min_count    = 4, max_count = 2, initial_node_count = 2
      }
    }
  }
  expect_failures = [var.node_pools]
}

# expect: nvidia-l4 (g2-*)
run "accelerator_on_the_wrong_machine_family" {
  command = plan
  variables {
    node_pools = {
      default = { machine_type = "e2-standard-4", min_count = 1, max_count = 3, initial_node_count = 2 }
      gpu = {
        machine_type = "n1-standard-8", accelerator_type = "nvidia-l4", accelerator_count = 1
        min_count    = 1, max_count = 2, initial_node_count = 1
      }
    }
  }
  expect_failures = [var.node_pools]
}

# expect: accelerator_type and accelerator_count go together
run "accelerator_type_without_count" {
  command = plan
  variables {
    node_pools = {
      default = { machine_type = "e2-standard-4", min_count = 1, max_count = 3, initial_node_count = 2 }
      gpu     = { machine_type = "g2-standard-8", accelerator_type = "nvidia-l4", min_count = 1, max_count = 2, initial_node_count = 1 }
    }
  }
  expect_failures = [var.node_pools]
}

# expect: ingress_route is empty but enable_ingress = true
run "ingress_without_route" {
  command = plan
  variables {
    ingress_route = ""
  }
  expect_failures = [var.ingress_route]
}

# expect: ingress_use_existing_static_ip = true needs ingress_static_ip_name
run "existing_static_ip_without_name" {
  command = plan
  variables {
    ingress_static_ip_name         = ""
    ingress_use_existing_static_ip = true
  }
  expect_failures = [var.ingress_use_existing_static_ip]
}

# expect: zone must be a zone of region
run "zone_outside_region" {
  command = plan
  variables {
    zone = "europe-west4-a"
  }
  expect_failures = [var.zone]
}

# expect: project_id must be a GCP project id
run "bad_project_id" {
  command = plan
  variables {
    project_id = "My_Project"
  }
  expect_failures = [var.project_id]
}

# expect: on GCP leave it empty
run "certificate_arn_on_gcp" {
  command = plan
  variables {
    certificate_arn = "arn:aws:acm:us-central1:123456789012:certificate/0a1b2c3d"
  }
  expect_failures = [var.certificate_arn]
}

# expect: gke_admin_users must be e-mail addresses
run "admin_user_not_an_email" {
  command = plan
  variables {
    gke_admin_users = ["alice"]
  }
  expect_failures = [var.gke_admin_users]
}

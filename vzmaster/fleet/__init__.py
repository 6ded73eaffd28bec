"""The fleet: vz.yml (config, inventory), placement, plan, deploy."""

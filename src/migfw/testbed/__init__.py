"""The migration testbed: hosts, guest image, firewall ruleset, prober and trials."""

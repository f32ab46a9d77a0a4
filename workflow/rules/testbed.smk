# Testbed: provisioning, guest image, ruleset, placements and the trials' live migrations.
# A trial folder is the contract with the analysis:
# <trials_dir>/<experiment>/<trial>/probe.pcap + trial.json (migfw.trials.contract).
# Each trial's spec is its row of the design sheet, keyed by its id (migfw.trials.design).
# Each rule runs one function of its migfw.testbed module in a process of its own
# (testbed_job: common.smk, migfw.jobs): it boots VMs and holds namespaces. render_ruleset
# only renders text: in process (job).

if SOURCE == "testbed":

    preflight = Stage("migfw.testbed.preflight")
    guest = Stage("migfw.testbed.guest")
    ruleset_render = Stage("migfw.testbed.ruleset_render")
    providers = Stage("migfw.testbed.providers")
    placement_command = Stage("migfw.testbed.placements.command")
    trialcli = Stage("migfw.testbed.trialcli")

    # On a cluster (profiles/slurm) these stay on the controller, which reaches the hosts.
    localrules:
        testbed_preflight,
        guest_image,
        render_ruleset,
        testbed_up,
        deploy_placement,
        trial,

    # Once every trial is finished, no file change reruns the testbed rules: the manifest
    # (trials_manifest, trials.smk) keeps them in the DAG (and the report's graph), but they must never run again.
    settled = ancient if not TRIALS_PENDING else (lambda path: path)

    rule testbed_preflight:
        """Checks root, /dev/net/tun, commands, Python modules and KVM before anything runs."""
        # Root, /dev/net/tun, commands, Python modules, KVM: one line per problem, first.
        output:
            "results/testbed/preflight.txt",
        log:
            f"{LOGS}/testbed_preflight.log",
        run:
            if not kept_evidence(output, log):
                cfg = effective_config(log)
                testbed_job(log, preflight.run_preflight, config=cfg)
                shutil.copyfile(log[0], output[0])

    rule guest_image:
        """Builds the target VM's kernel and initramfs from Debian packages (cached)."""
        input:
            preflight=ancient("results/testbed/preflight.txt"),
            guest_files=[
                settled(str(p)) for p in sorted(Path("resources/guest").iterdir())
            ],
            domain=settled("resources/domain.xml"),
        output:
            manifest="results/testbed/guest/manifest.json",
        log:
            f"{LOGS}/guest_image.log",
        benchmark:
            f"{BENCH}/guest_image.tsv"
        params:
            # The image's files sit beside the manifest, which names each with its SHA-256.
            folder=lambda w, output: Path(output.manifest).parent,
        run:
            if not kept_evidence(output, log):
                cfg = effective_config(log)
                testbed_job(
                    log, guest.build_guest_image, config=cfg, out=params.folder
                )

    rule render_ruleset:
        """config/ruleset.yaml -> the guest's nftables ruleset and the thesis's pf.conf."""
        input:
            config["ruleset"],
        output:
            nft="results/testbed/ruleset.nft",
            pf="results/testbed/pf.conf",
        log:
            f"{LOGS}/render_ruleset.log",
        run:
            job(
                log,
                ruleset_render.render_rulesets,
                ruleset=input[0],
                nft=output.nft,
                pf=output.pf,
            )

    rule testbed_up:
        """Brings the hypervisor hosts up (or reaches the lab's) and records their identities."""
        # Provisioning as a rule: both hosts' libvirtds and the VM; the output is the
        # evidence (hosts, their libvirt identities, where the VM runs).
        input:
            image=ancient("results/testbed/guest/manifest.json"),
        output:
            hosts="results/testbed/hosts.json",
        log:
            f"{LOGS}/testbed_up.log",
        resources:
            **ALL_PAIRS,
        run:
            if not kept_evidence(output, log):
                cfg = effective_config(log)
                testbed_job(log, providers.bring_up, config=cfg, out=output.hosts)

    rule deploy_placement:
        """Deploys the ruleset for one firewall placement and records its packet checks."""
        # The ruleset deployed where the placement puts it, proved with packets
        # (docs/placements.md). Every trial deploys and verifies its placement again.
        input:
            hosts=ancient("results/testbed/hosts.json"),
            ruleset=ancient(config["ruleset"]),
        output:
            "results/testbed/placements/{placement}.json",
        log:
            f"{LOGS}/deploy_placement/{{placement}}.log",
        wildcard_constraints:
            placement=PLACEMENT_WILDCARD,
        priority: ovn_first
        resources:
            **ALL_PAIRS,
        run:
            if not kept_evidence(output, log):
                cfg = effective_config(log)
                testbed_job(
                    log,
                    placement_command.deploy_placement,
                    config=cfg,
                    placement=wildcards.placement,
                    out=output[0],
                )

    rule trial:
        """One live migration with per-trial capture; never rerun once its folder is finished."""
        # One migration per host pair at a time (resource pair<k>). A finished trial is never
        # a job of this rule (see unfinished_pattern): its folder is the raw data and is
        # immutable, and an unfinished one has no outputs yet, so its inputs only order the
        # DAG (see trial_deployment); the command reads the trial's spec (factor levels,
        # pair) from its row of the design sheet.
        input:
            unpack(trial_deployment),
            design=DESIGN_SHEET,
            image="results/testbed/guest/manifest.json",
            ruleset=config["ruleset"],
        output:
            pcap=f"{TRIALS_DIR}/{{trial}}/probe.pcap",
            meta=f"{TRIALS_DIR}/{{trial}}/trial.json",
        log:
            f"{LOGS}/trials/{{trial}}.log",
        benchmark:
            f"{BENCH}/trials/{{trial}}.tsv"
        wildcard_constraints:
            trial=unfinished_pattern(),
        priority: ovn_first
        resources:
            **PAIR_RESOURCES,
        run:
            cfg = effective_config(log)
            testbed_job(
                log,
                trialcli.run_design_trial,
                config=cfg,
                design=input.design,
                trial_id=wildcards.trial,
                out=f"{TRIALS_DIR}/{wildcards.trial}",
            )

    onstart:
        own_testbed()

    onsuccess:
        release_testbed()

    onerror:
        release_testbed()

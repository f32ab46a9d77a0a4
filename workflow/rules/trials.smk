# Trials: the design sheet (one typed spec per trial), the finished trials' manifest, and
# crafted trials with known losses. A trial folder is the contract with the analysis:
# <trials_dir>/<experiment>/<trial>/probe.pcap + trial.json (migfw.trials.contract).
# Real trials are made by the testbed's `trial` rule (testbed.smk).

design = Stage("migfw.trials.design")
manifest = Stage("migfw.trials.manifest")
craftcli = Stage("migfw.trials.craftcli")

if SOURCE != "directory":

    localrules:
        design_sheet,

    rule design_sheet:
        """The config's experiments expanded once into typed trial specs (one row per trial)."""
        # Rewritten when the design changes (its hash is a param); a trial reads its row.
        output:
            DESIGN_SHEET,
        log:
            f"{LOGS}/design_sheet.log",
        params:
            digest=design_digest(),
        run:
            job(log, design.write_design, specs=list(DESIGN.values()), path=output[0])


if SOURCE == "testbed":

    localrules:
        trials_manifest,

    rule trials_manifest:
        """The trials the analysis reads (id, status, trial.json's SHA-256), after the testbed and placements."""
        # Provisioning -> deployment -> trials -> analysis in the DAG, also when every trial
        # was finished earlier (finished trials are no job of `trial`): the testbed evidence
        # is an ancient input, so it orders the graph and never reruns anything.
        input:
            unpack(manifest_inputs),
        output:
            "results/testbed/trials.tsv",
        log:
            f"{LOGS}/trials_manifest.log",
        run:
            job(
                log,
                manifest.write_manifest,
                trials=TRIALS,
                trial_jsons=input.trials,
                out=output[0],
            )


if SOURCE == "crafted":

    localrules:
        crafted_trial,

    rule crafted_trial:
        """A crafted trial folder with known losses and breaches (demo and CI)."""
        input:
            design=ancient(DESIGN_SHEET),
        output:
            pcap=f"{TRIALS_DIR}/{{trial}}/probe.pcap",
            meta=f"{TRIALS_DIR}/{{trial}}/trial.json",
        log:
            f"{LOGS}/trials/{{trial}}.log",
        params:
            folder=trial_folder,
        run:
            job(
                log,
                craftcli.craft_design_trial,
                design=input.design,
                trial=wildcards.trial,
                out=params.folder,
            )

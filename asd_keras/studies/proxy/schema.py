"""The one schema of the proxy study's files (`asd_keras.studies.proxy`):
the columns of `rows.csv`, the keys of a study configuration's families
and of `study.json`, and the report's figure names."""

# The ASD AUCs of the representation probe, per machine type and trial.
ASD_COLUMNS = ("lp_in_domain_auc", "lp_out_domain_auc", "md_auc")
# Training health: the first, last and lowest loss and the epochs trained.
HEALTH_COLUMNS = ("first_loss", "last_loss", "min_loss", "epochs")
# What identifies a row of `rows.csv`.
KEY_COLUMNS = ("family", "configuration", "machine_type", "trial")
# The keys of a family in a study configuration (YAML) ...
CONFIG_FAMILY_KEYS = frozenset({"name", "label", "system", "proxy_metric", "lower_is_better",
                                "base", "configurations"})
# ... and in the `study.json` a finished study records.
RECORDED_FAMILY_KEYS = ("name", "label", "proxy_metric", "proxy_metrics", "lower_is_better",
                        "configurations")
FIGURES = {
    "lp_in_domain_auc": "fig2_in_domain_lp.png",
    "lp_out_domain_auc": "fig3_out_domain_lp.png",
    "md_auc": "fig4_md.png",
}
FIG5 = "fig5_projections.png"

"""The demo's report: metrics from what was measured, out/report.md with charts, a one-screen summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

REPORT = "report.md"
CHARTS = {
    "latency": "alert_latency.png",
    "timeline": "alerts_and_frauds.png",
    "pr": "precision_recall.png",
}


def compute_metrics(result: Any) -> dict[str, Any]:
    """Counts, quality and latency of one demo run (plain numbers, for the report and the tests)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    scored_ids = [t for t in result.scores if t in result.truth]
    y = np.array([result.truth[t] for t in scored_ids], dtype=int)
    s = np.array([result.scores[t] for t in scored_ids], dtype=float)
    alerted = set(result.alerts_outbox)
    above = {t for t, score in result.scores.items() if score >= result.threshold}
    frauds_scored = int(y.sum())
    true_alerts = sum(result.truth.get(t, 0) for t in alerted)
    m: dict[str, Any] = {
        "produced": result.produced,
        "produced_frauds": result.produced_frauds,
        "producer_failed": result.producer_failed,
        "producer_rate": result.producer_rate,
        "labels_produced": result.labels,
        "ingested": result.ingested,
        "ingested_distinct": result.ingested_distinct,
        "scored": result.scored,
        "scored_distinct": result.scored_distinct,
        "not_scored": len(set(result.truth) - set(result.scores)),
        "threshold": result.threshold,
        "scores_above_threshold": len(above),
        "alerts": len(alerted),
        "alerts_sent": sum(1 for v in result.alerts_outbox.values() if v == "sent"),
        "alerts_consumed": len(result.alerts_consumed),
        "alert_deliveries": sum(result.alerts_consumed.values()),
        "cases": len(result.cases),
        "cases_duplicated": sum(1 for n in result.cases.values() if n > 1),
        "cards_locked": len(result.card_locks),
        "card_locks": sum(count for count, _ in result.card_locks.values()),
        "frauds_scored": frauds_scored,
        "true_alerts": true_alerts,
        "precision": true_alerts / len(alerted) if alerted else None,
        "recall": true_alerts / frauds_scored if frauds_scored else None,
        "recall_of_scores": sum(result.truth.get(t, 0) for t in above) / frauds_scored
        if frauds_scored
        else None,
        "average_precision": float(average_precision_score(y, s)) if 0 < frauds_scored < len(y) else None,
        "auc_roc": float(roc_auc_score(y, s)) if 0 < frauds_scored < len(y) else None,
        "drained": result.drained,
        "timings_s": dict(result.timings_s),
    }
    lat = np.array(result.latencies_ms, dtype=float) / 1000
    for p in (50, 95, 99):
        m[f"latency_p{p}_s"] = float(np.percentile(lat, p)) if len(lat) else None
    m["latency_max_s"] = float(lat.max()) if len(lat) else None
    lag = np.array(result.lag_samples_s, dtype=float)
    m["ingestion_lag_p50_s"] = float(np.percentile(lag, 50)) if len(lag) else None
    m["ingestion_lag_max_s"] = float(lag.max()) if len(lag) else None
    m["baseline"] = _baseline_metrics(result)
    return m


def _baseline_metrics(result: Any) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score

    info = result.baseline or {}
    if not info.get("available"):
        return {"available": False, "reason": info.get("reason", "not run")}
    predictions = info["predictions"]
    ids = [t for t in predictions if t in result.truth]
    y = np.array([result.truth[t] for t in ids], dtype=int)
    p = np.array([predictions[t] for t in ids], dtype=float)
    flagged = p >= result.threshold
    return {
        "available": True,
        "rows": len(ids),
        "average_precision": float(average_precision_score(y, p)) if 0 < y.sum() < len(y) else None,
        "recall": float((flagged & (y == 1)).sum() / y.sum()) if y.sum() else None,
        "precision": float((flagged & (y == 1)).sum() / flagged.sum()) if flagged.sum() else None,
    }


def write_report(result: Any, config: Any, out_dir: Path) -> list[Path]:
    """out/report.md and its PNG charts; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    m = result.metrics
    files = [_latency_chart(result, out_dir), _timeline_chart(result, out_dir), _pr_chart(result, m, out_dir)]
    path = out_dir / REPORT
    path.write_text(_markdown(result, config, m))
    return [path, *[f for f in files if f is not None]]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _latency_chart(result: Any, out_dir: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    lat = np.array(result.latencies_ms, dtype=float) / 1000
    if len(lat):
        ax.hist(lat, bins=40, color="#4c72b0")
        for p, style in ((50, "--"), (99, ":")):
            value = np.percentile(lat, p)
            ax.axvline(value, color="black", linestyle=style, label=f"p{p} = {value:.2f} s")
        ax.legend()
    ax.set_xlabel("alert latency: producer timestamp -> alert consumed by act_on_alert (s)")
    ax.set_ylabel("alerts")
    ax.set_title("Alert latency")
    path = out_dir / CHARTS["latency"]
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _timeline_chart(result: Any, out_dir: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    end = max([t for t, _ in result.alert_times] + result.fraud_times + [1.0])
    bins = np.arange(0, end + 5, 5)
    ax.hist(result.fraud_times, bins=bins, alpha=0.5, label="frauds produced (ground truth)", color="#c44e52")
    ax.hist(
        [t for t, _ in result.alert_times], bins=bins, alpha=0.5, label="alerts consumed", color="#4c72b0"
    )
    ax.hist(
        [t for t, f in result.alert_times if f],
        bins=bins,
        histtype="step",
        linewidth=1.5,
        label="alerts on true frauds",
        color="black",
    )
    ax.set_xlabel("seconds since the stream started (5 s bins)")
    ax.set_ylabel("count")
    ax.set_title("Alerts and frauds over time")
    ax.legend()
    path = out_dir / CHARTS["timeline"]
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pr_chart(result: Any, m: dict[str, Any], out_dir: Path) -> Path | None:
    from sklearn.metrics import precision_recall_curve

    ids = [t for t in result.scores if t in result.truth]
    y = np.array([result.truth[t] for t in ids], dtype=int)
    if not 0 < y.sum() < len(y):
        return None
    s = np.array([result.scores[t] for t in ids], dtype=float)
    precision, recall, _ = precision_recall_curve(y, s)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(recall, precision, label=f"model (AP = {m['average_precision']:.3f})")
    if m["precision"] is not None and m["recall"] is not None:
        ax.scatter(
            [m["recall"]],
            [m["precision"]],
            color="red",
            zorder=3,
            label=f"alerts at threshold {result.threshold:g}",
        )
    base = m["baseline"]
    if base.get("available") and base.get("recall") is not None and base.get("precision") is not None:
        ax.scatter(
            [base["recall"]], [base["precision"]], marker="x", color="gray", zorder=3, label="article's views"
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall of the live scores")
    ax.legend(loc="lower left")
    path = out_dir / CHARTS["pr"]
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "n/a"
    if kind == "%":
        return f"{value:.1%}"
    if kind == "s":
        return f"{value:.2f} s"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _rows(result: Any, m: dict[str, Any]) -> list[tuple[str, str]]:
    base = m["baseline"]
    rows = [
        ("history", f"{result.history_rows:,} transactions, {result.history_frauds:,} frauds"),
        ("model", f"{result.model_name} ({_validation(result)})"),
        (
            "live transactions produced",
            f"{m['produced']:,} at {m['producer_rate']:,.0f} tx/s ({m['produced_frauds']:,} frauds)",
        ),
        ("labels produced", _fmt(m["labels_produced"])),
        ("ingested (distinct)", f"{m['ingested']:,} ({m['ingested_distinct']:,})"),
        ("scored (distinct)", f"{m['scored']:,} ({m['scored_distinct']:,}); not scored: {m['not_scored']:,}"),
        (
            "alerts: outbox / sent / consumed",
            f"{m['alerts']:,} / {m['alerts_sent']:,} / {m['alerts_consumed']:,}",
        ),
        (
            "act_on_alert deliveries / cases / card locks (cards)",
            f"{m['alert_deliveries']:,} / {m['cases']:,} / {m['card_locks']:,} ({m['cards_locked']:,})",
        ),
        (
            "ingestion lag p50 / max",
            f"{_fmt(m['ingestion_lag_p50_s'], 's')} / {_fmt(m['ingestion_lag_max_s'], 's')}",
        ),
        (
            "alert latency p50 / p95 / p99 / max",
            " / ".join(
                _fmt(m[k], "s") for k in ("latency_p50_s", "latency_p95_s", "latency_p99_s", "latency_max_s")
            ),
        ),
        (
            f"precision / recall at threshold {m['threshold']:g}",
            f"{_fmt(m['precision'], '%')} / {_fmt(m['recall'], '%')}",
        ),
        (
            "average precision / AUC ROC (live scores)",
            f"{_fmt(m['average_precision'])} / {_fmt(m['auc_roc'])}",
        ),
    ]
    if base.get("available"):
        rows.append(
            (
                "article's views (baseline_): AP / recall",
                f"{_fmt(base['average_precision'])} / {_fmt(base['recall'], '%')}",
            )
        )
    else:
        rows.append(("article's views (baseline_)", f"not measured: {base.get('reason', '')}"))
    rows.append(("drained (everything scored, sent, consumed)", "yes" if m["drained"] else "NO"))
    rows += [(f"{name} (scheduler)", text) for name, text in result.functions.items()]
    rows.append(("timings", ", ".join(f"{k} {v:.1f} s" for k, v in m["timings_s"].items())))
    return rows


def _validation(result: Any) -> str:
    pairs = [f"{k} {v}" for k, v in result.show_model if k.lower().startswith("validation")]
    return "; ".join(pairs) or "no validation metric reported"


def _markdown(result: Any, config: Any, m: dict[str, Any]) -> str:
    lines = [
        "# Demo report: card fraud pipeline on the embedded local stack",
        "",
        f"World: {config.customers:,} customers, {config.days} days of history, seed {config.seed}; "
        f"live stream at {config.rate:,.0f} tx/s for {config.minutes:g} min.",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in _rows(result, m)],
        "",
        "Latency is measured from the producer's wall-clock timestamp on each transaction to the moment",
        "the alert is handed to `act_on_alert`. Precision and recall compare the alerts with the",
        "simulator's ground truth for the live transactions.",
        "",
        "## SHOW MODEL",
        "",
        "| key | value |",
        "|---|---|",
        *[f"| {k} | {v.replace('|', '/')} |" for k, v in result.show_model],
        "",
        "## Charts",
        "",
        f"![alert latency]({CHARTS['latency']})",
        "",
        f"![alerts and frauds over time]({CHARTS['timeline']})",
        "",
        f"![precision-recall]({CHARTS['pr']})",
        "",
    ]
    return "\n".join(lines)


def summary(result: Any, config: Any) -> Any:
    """One screen: the report's table and where the files are."""
    from rich.table import Table

    table = Table(title="demo summary", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in _rows(result, result.metrics):
        table.add_row(key, value)
    table.caption = "report: " + ", ".join(str(p) for p in result.report_files)
    return table

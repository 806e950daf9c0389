"""The DADNN experiment's main function on a tiny config: tables, paired differences, plain sentences, files."""
import json
import os

from leanops.dadnn import experiment


def test_experiment_main_tiny(tmp_path, capsys):
    out = experiment.main(["--scenes", "4", "--samples", "800", "--epochs", "1", "--seeds", "2",
                           "--out-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "known ground truth" in printed and "paired differences" in printed
    assert len(out["sentences"]) == 6 and all(s.startswith(("HOLDS: ", "DOES NOT HOLD: ")) for s in out["sentences"])
    assert all(s in printed for s in out["sentences"])
    path = tmp_path / "dadnn-experiment-custom.json"
    assert path.exists() and os.path.getsize(str(path).replace(".json", ".png")) > 1000
    saved = json.loads(path.read_text())
    r = saved["results"][0]
    assert set(r["models"]) == {"bayes optimal", *experiment.MODELS}
    assert len(r["models"]["DADNN-MLP"]["per_scene_auc"]) == 4
    # the separate models hold S single-scene models: more parameters than one DADNN
    assert r["models"]["separate"]["parameters"] > r["models"]["DADNN-MLP"]["parameters"]
    assert r["serving"]["speedup"]["anchor"] == "S separate models"
    # head and tail groups split the scenes by traffic
    assert set(r["groups"]["head"]).isdisjoint(r["groups"]["tail"]) and 0 in r["groups"]["head"]

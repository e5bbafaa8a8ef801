from vidgpt.train.lm_data import RECORD_EXTS, list_files


def test_shard_folder_lists_only_its_parquet_files(tmp_path):
    # what ingest / build-lm leave in a shard folder next to the records
    for name in ["part-00000-00000.parquet", "part-00000-00001.parquet", "manifest.json", "report.json", "progress-00000.json"]:
        (tmp_path / name).write_bytes(b"x")
    files = list_files([str(tmp_path)], RECORD_EXTS)
    assert [f.name for f in files] == ["part-00000-00000.parquet", "part-00000-00001.parquet"]


def test_jsonl_folder_still_lists_jsonl(tmp_path):
    (tmp_path / "a.jsonl").write_text("{}\n")
    assert [f.name for f in list_files([str(tmp_path)], RECORD_EXTS)] == ["a.jsonl"]

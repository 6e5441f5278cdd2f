import hashlib

from deploy_robust.hashing import sha256_bytes, sha256_file


def test_file_and_bytes_digests_agree_across_chunk_boundaries(tmp_path):
    data = bytes(range(256)) * 1000
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, chunk=1000) == sha256_bytes(data) == hashlib.sha256(data).hexdigest()

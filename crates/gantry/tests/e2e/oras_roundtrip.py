"""Drives Gantry with oras-py (PyPI `oras`): pushes a file artifact monolithically and
in 1 MiB chunks, pulls it back, lists tags, and pushes a referrer with `subject`,
then reads it back through the referrers API. Prints one PASS/FAIL line per check;
exits non-zero if any check failed.

Usage: oras_roundtrip.py HOST:PORT REPO USER PASSWORD
"""
import hashlib
import os
import sys
import tempfile
import zipfile

import oras.client
import oras.oci

host, repo, user, password = sys.argv[1:5]
ok = True


def check(name, cond, detail=""):
    global ok
    ok &= bool(cond)
    print(("PASS " if cond else "FAIL ") + name + (f"  ({detail})" if detail else ""), flush=True)


client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
client.auth.set_basic_auth(user, password)

work = tempfile.mkdtemp(prefix="oras-e2e.")
src, out = os.path.join(work, "src"), os.path.join(work, "out")
os.makedirs(src)
os.makedirs(out)
zpath = os.path.join(src, "site.zip")
with zipfile.ZipFile(zpath, "w") as archive:
    archive.writestr("index.html", "<h1>hello</h1>\n")
    archive.writestr("app.bin", os.urandom(3 << 20))
want = hashlib.sha256(open(zpath, "rb").read()).hexdigest()
os.chdir(src)

target = f"{host}/{repo}:v1"
response = client.push(files=["site.zip:application/zip"], target=target, manifest_annotations={"stage": "dev"})
check("monolithic push", response.status_code in (200, 201), f"HTTP {response.status_code}")
manifest = client.get_manifest(target)
check("manifest lists the zip layer", manifest["layers"][0]["mediaType"] == "application/zip")
files = client.pull(target=target, outdir=out)
got = hashlib.sha256(open(files[0], "rb").read()).hexdigest() if files else None
check("pulled bytes match", got == want, f"{got} vs {want}")

response = client.push(files=["site.zip"], target=f"{host}/{repo}:chunked", do_chunked=True, chunk_size=1 << 20)
check("chunked push", response.status_code in (200, 201), f"HTTP {response.status_code}")
tags = set(client.get_tags(f"{host}/{repo}"))
check("tags listed", {"v1", "chunked"} <= tags, str(sorted(tags)))

raw = client.do_request(f"http://{host}/v2/{repo}/manifests/v1", "GET",
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
subject_digest = "sha256:" + hashlib.sha256(raw.content).hexdigest()
subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json",
                           digest=subject_digest, size=len(raw.content))
with open("sbom.json", "w") as f:
    f.write('{"sbom": true}')
response = client.push(files=["sbom.json:application/json"], target=f"{host}/{repo}:sbom", subject=subject)
check("referrer push with subject", response.status_code in (200, 201) and response.headers.get("OCI-Subject") == subject_digest,
      f"HTTP {response.status_code}, OCI-Subject {response.headers.get('OCI-Subject')}")
referrers = client.do_request(f"http://{host}/v2/{repo}/referrers/{subject_digest}", "GET").json()
check("referrers API lists the sbom", len(referrers.get("manifests", [])) == 1, str(referrers))
sys.exit(0 if ok else 1)

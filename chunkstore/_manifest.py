"""The manifest of a committed Zarr: every object it holds, with its size and content
tag, kept with the STAC item (``stac/<collection>/<item>/manifest.json``, written just
before the item, deleted with it).

A reader compares the manifest with one listing of the Zarr: an object that is
missing, cut short, or whose content changed (another shard copied over it, an
edited ``zarr.json``) is an error naming the object and the command that rewrites
it, and that command (the job, run again) finds the same damage and rewrites exactly
the shards it touches. Objects not in the manifest (a label being remade) are not
looked at.

Content tags: on S3, the ETag the server reports (for satchunk's single-part PUTs the
MD5 of the object, so an object copied from another position has another tag; a
multipart ETag is compared by size only); on a local directory, the MD5 of the file,
hashed again only when its modification time changed (so a copied store is checked
once per open, not trusted).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._layout import (
    COORDS,
    LABEL_ARRAYS,
    LEADING,
    item_key,
    manifest_key,
    mask_item_id,
    zarr_item,
)
from .errors import CorruptObjectError, NotFoundError

if TYPE_CHECKING:
    from ._store import Store

VERSION = 1
_MD5 = re.compile(r"^[0-9a-f]{32}$")

Entry = list[Any]  # [size, md5 hex, mtime ns or None]


@dataclass(frozen=True)
class Damage:
    key: str  # relative to the Zarr
    what: str  # "is missing", "is 12 bytes, ..."


def _item_id(zkey: str) -> tuple[str, str]:
    collection, scene, model = zarr_item(zkey)
    return collection, scene if model is None else mask_item_id(scene, model)


def read_manifest(store: Store, zkey: str) -> dict[str, Entry] | None:
    """The manifest's entries (keys relative to the Zarr at ``zkey``), or None if it
    has none."""
    key = manifest_key(*_item_id(zkey))
    try:
        raw = store.read_bytes(key)
    except NotFoundError:
        return None
    try:
        doc = json.loads(raw)
        objects = doc["objects"]
        if not isinstance(objects, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise CorruptObjectError(f"object {store.url(key)} is not a satchunk manifest: "
                                 f"{_fix(store, zkey)}") from None
    return objects


def seal(store: Store, zkey: str, owned: Callable[[str], bool] | None = None) -> None:
    """Write the manifest of the Zarr at ``zkey`` from one listing of it: the objects of
    the arrays ``owned`` says yes to (all when None) as they are now, the others as the
    current manifest has them."""
    listing = store.stat(zkey)
    entries: dict[str, Entry] = {}
    if owned is not None:
        entries = {k: v for k, v in (read_manifest(store, zkey) or {}).items()
                   if not owned(_array(k))}
    for rel, (size, etag, mtime) in sorted(listing.items()):
        if owned is None or owned(_array(rel)):
            entries[rel] = [size, _content_md5(store, zkey, rel, etag), mtime]
    doc = {"version": VERSION, "zarr": zkey, "objects": dict(sorted(entries.items()))}
    store.write_bytes(manifest_key(*_item_id(zkey)), json.dumps(doc).encode())


def drop_from_manifest(store: Store, zkey: str, arrays: Iterable[str]) -> None:
    """Take the objects of ``arrays`` out of the manifest (they are about to be
    remade; readers then do not look at them until :func:`seal` puts them back)."""
    entries = read_manifest(store, zkey)
    if entries is None:
        return
    names = tuple(arrays)
    keep = {k: v for k, v in entries.items() if _array(k) not in names}
    doc = {"version": VERSION, "zarr": zkey, "objects": keep}
    store.write_bytes(manifest_key(*_item_id(zkey)), json.dumps(doc).encode())


def delete_manifest(store: Store, collection: str, item: str) -> None:
    store.delete_object(manifest_key(collection, item))


def find_damage(store: Store, zkey: str, arrays: Callable[[str], bool] | None = None
          ) -> list[Damage] | None:
    """Objects of the Zarr at ``zkey`` that differ from its manifest (of the arrays
    ``arrays`` says yes to; all when None); None when there is no manifest."""
    entries = read_manifest(store, zkey)
    if entries is None:
        return None
    listing = store.stat(zkey)
    out = []
    for rel, (size, md5, mtime) in entries.items():
        if arrays is not None and not arrays(_array(rel)):
            continue
        now = listing.get(rel)
        if now is None:
            out.append(Damage(rel, "is missing"))
        elif now[0] != size:
            out.append(Damage(rel, f"is {now[0]} bytes where {size} were written (cut short "
                                   "or replaced)"))
        elif not _same_content(store, zkey, rel, md5, now, mtime):
            out.append(Damage(rel, "holds other content than was written there (replaced, "
                                   "e.g. by another shard)"))
    return out


def verify(store: Store, zkey: str, skip: tuple[str, ...] = ()) -> None:
    """Raise :class:`CorruptObjectError` naming the first object of the Zarr at ``zkey``
    (arrays in ``skip`` aside) that differs from its manifest, and the command that
    rewrites it. A committed item without a manifest is damage too; an uncommitted
    Zarr (a job is writing it) is not checked."""
    damage = find_damage(store, zkey, (lambda a: a not in skip) if skip else None)
    if damage is None:
        collection, item = _item_id(zkey)
        if store.exists(item_key(collection, item)):
            raise CorruptObjectError(
                f"object {store.url(manifest_key(collection, item))} is missing (item "
                f"{collection}/{item} is committed, so its Zarr cannot be checked): "
                f"{_fix(store, zkey)}")
        return
    if damage:
        first = damage[0]
        more = f" (and {len(damage) - 1} more objects)" if len(damage) > 1 else ""
        raise CorruptObjectError(f"object {store.url(zkey)}/{first.key} {first.what}{more}: "
                                 f"{_fix(store, zkey, _array(first.key))}")


def repairs(store: Store, zkey: str, arrays: Callable[[str], bool] | None = None
            ) -> tuple[set[tuple[int, int]] | None, str]:
    """What a re-run of the job must rewrite of the committed Zarr at ``zkey`` (of the
    arrays ``arrays`` says yes to), and why: (set(), "") when it matches its manifest;
    (shards, why) when shard objects are damaged, whose objects are then deleted;
    (None, why) when all of it must be (no manifest, or metadata or coordinates
    damaged)."""
    damage = find_damage(store, zkey, arrays)
    if damage is None:
        return None, "it has no manifest"
    if not damage:
        return set(), ""
    more = f" (and {len(damage) - 1} more objects)" if len(damage) > 1 else ""
    shards = damaged_shards(damage)
    if shards:  # gone before they are rewritten: zarr would merge a partial edge shard
        # with what is there, and a damaged object cannot be read
        store.delete_keys([f"{zkey}/{rel}" for rel in store.stat(zkey)
                           if shard_of(rel) in shards and (arrays is None or arrays(_array(rel)))])
    return shards, f"{damage[0].key} {damage[0].what}{more}"


def damaged_shards(damage: Iterable[Damage]) -> set[tuple[int, int]] | None:
    """(sy, sx) of the shards the damaged objects belong to; None when one of them is
    not a shard's (metadata, coordinates): then the whole Zarr is rewritten."""
    out = set()
    for d in damage:
        shard = shard_of(d.key)
        if shard is None:
            return None
        out.add(shard)
    return out


def shard_of(rel: str) -> tuple[int, int] | None:
    """(sy, sx) of a shard object's key (relative to the Zarr), else None."""
    array, sep, chunk = rel.partition("/c/")
    parts = chunk.split("/")
    if not sep or array in COORDS or "/" in array:
        return None
    if array in LEADING:
        parts = parts[1:]
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        return None
    return int(parts[0]), int(parts[1])


def _array(rel: str) -> str:
    return rel.split("/", 1)[0]


def _content_md5(store: Store, zkey: str, rel: str, etag: str | None) -> str:
    if etag and _MD5.fullmatch(etag):
        return etag
    return hashlib.md5(store.read_bytes(f"{zkey}/{rel}"), usedforsecurity=False).hexdigest()


def _same_content(store: Store, zkey: str, rel: str, md5: str,
                  now: tuple[int, str | None, int | None], mtime: int | None) -> bool:
    _, etag, now_mtime = now
    if etag is not None:  # S3: the server's tag; a multipart one says nothing of MD5
        return etag == md5 or not _MD5.fullmatch(etag)
    if mtime is not None and now_mtime == mtime:
        return True
    return _content_md5(store, zkey, rel, None) == md5


def _fix(store: Store, zkey: str, array: str | None = None) -> str:
    """The command that rewrites the Zarr at ``zkey`` (or its ``array``)."""
    collection, scene, model = zarr_item(zkey)
    if model is not None:
        return (f"re-run `satchunk predict {scene} --collection {collection} --model ...` "
                f"with the model of id {model}: it rewrites what is damaged")
    if array in LABEL_ARRAYS:
        source = _label_source(store, zkey)
        if source:
            return (f"re-run `satchunk label {scene} --collection {collection} --from "
                    f"{source}`: it rewrites what is damaged")
    return (f"re-run the ingest of {collection}/{scene} (`satchunk ingest` with the same "
            "inputs): it rewrites what is damaged")


def _label_source(store: Store, zkey: str) -> str | None:
    """The ``--from`` of the label job that made the scene's label, if one did."""
    try:
        attrs = json.loads(store.read_bytes(f"{zkey}/label/zarr.json")).get("attributes", {})
        name = str((attrs.get("source") or {}).get("from") or "")
    except (NotFoundError, ValueError, AttributeError):
        return None
    if name.startswith("qa:"):
        return f"qa --qa-layout {name[3:]}"
    return None if name in ("", "raster", "polygons") else name  # those came with the ingest

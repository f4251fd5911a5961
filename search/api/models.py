"""One pydantic model per request and per response of the JSON API: they validate what comes in
(with the checks and messages of whysim.search.api.params), shape what goes out, and are the source of
the OpenAPI document (search/api/openapi.py).

Request models whose limits the operator sets (k, offset, list size, upload size) are built per
app by `request_models(settings, max_upload_bytes)`; the rest are plain classes.
"""
# No `from __future__ import annotations`: the models built inside request_models() use local values in
# their annotations, which pydantic must see evaluated.

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from whysim.indexer.catalog.schema import ImageStatus
from whysim.search.api import params as api_params
from whysim.search.api.settings import ApiSettings
from whysim.search.explain.correspondence import DEFAULT_MATCHES, MAX_MATCHES
from whysim.search.serving.engine import MAX_IMAGE_ID
from whysim.search.serving.explanations import KINDS, SIDES, STYLES

DIGEST_PATTERN = "^[0-9a-fA-F]{64}$"
QUERY_REF_PATTERN = "^([0-9a-fA-F]{64}|0*[1-9][0-9]*)$"
STATUSES = tuple(status.value for status in ImageStatus)
LIST_STATUSES = (*STATUSES, "all")
MAX_LIST_OFFSET = 2**31


def _check(check: Callable[..., Any], **options: Any) -> BeforeValidator:
    """Runs `check(value, field name, **options)` before pydantic's own (schema) validation."""
    return BeforeValidator(lambda value, info: check(value, _name(info), **options))


def _name(info: ValidationInfo) -> str:
    return info.field_name or "value"


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # "absent" is not a value a client can send


def Integer(low: int, high: int, typed: bool, description: str) -> Any:  # noqa: N802 - a type factory
    return Annotated[int, Field(ge=low, le=high, description=description),
                     _check(api_params.integer, low=low, high=high, typed=typed)]


def Score(typed: bool, description: str) -> Any:  # noqa: N802
    return Annotated[float | None, Field(ge=-1.0, le=1.0, description=description, json_schema_extra=_score_schema),
                     _check(api_params.score, typed=typed)]


def _score_schema(schema: dict[str, Any]) -> None:
    """Documents the number only: a JSON null is refused, absence means "no minimum"."""
    number = next((option for option in schema.pop("anyOf", []) if option.get("type") == "number"), {})
    schema.update(number)
    _no_default(schema)


def Choice(options: tuple[str, ...], description: str) -> Any:  # noqa: N802
    return Annotated[Literal[options], Field(description=description),  # type: ignore[valid-type]
                     _check(api_params.choice, options=options)]


def Boolean(typed: bool, description: str) -> Any:  # noqa: N802
    return Annotated[bool, Field(description=description), _check(api_params.boolean, typed=typed)]


IMAGE_ID_TEXT = "Search with the stored vector of this indexed image (left out of the hits)."
DIGEST_TEXT = "Search again with an earlier upload, by its digest (`query.key`)."
QUERY_REF_TEXT = "The query: an uploaded query's digest or an indexed image's id (`query.key` of a search)."
VERSION_TEXT = "Content version from the link; when it matches, the response may be cached for good."
Digest = Annotated[str, Field(pattern=DIGEST_PATTERN, description=DIGEST_TEXT),
                   BeforeValidator(lambda value: api_params.digest(value))]
QueryRef = Annotated[str, Field(pattern=QUERY_REF_PATTERN, description=QUERY_REF_TEXT),
                     BeforeValidator(lambda value: str(api_params.query_ref(value, strict=True)))]


class RequestModel(BaseModel):
    """Unknown fields are ignored, as before; every known one is checked."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)


# ------------------------------------------------------------------ requests


class ExplainQuery(RequestModel):
    query: QueryRef
    hit: Integer(1, MAX_IMAGE_ID, False, "Id of the hit image.")  # type: ignore[valid-type]


class ExplainRequest(ExplainQuery):
    matches: Integer(1, MAX_MATCHES, False, "How many top pairs of regions to return.") = DEFAULT_MATCHES  # type: ignore[valid-type]


class OverlayQuery(ExplainQuery):
    side: Choice(SIDES, "Whose map.")  # type: ignore[valid-type]
    kind: Choice(KINDS, "factual: evidence for the verdict; counterfactual: evidence against it.")  # type: ignore[valid-type]
    style: Choice(STYLES, "blended: the map over the image; heatmap: the colour map alone (same size), "  # type: ignore[valid-type]
                          "for a client that blends it over the image itself.") = STYLES[0]
    v: str | None = Field(None, description=VERSION_TEXT, json_schema_extra=_no_default)


class VersionQuery(RequestModel):
    v: str | None = Field(None, description=VERSION_TEXT, json_schema_extra=_no_default)


class ImagePath(RequestModel):
    image_id: int = Field(ge=1, description="Catalog id of the image.")


class DigestPath(RequestModel):
    digest: str = Field(pattern=DIGEST_PATTERN, description="The upload's digest.")


PRUNE_TEXT = "Also drop the images whose files are gone."


class RefreshJson(RequestModel):
    prune: Boolean(True, PRUNE_TEXT) = False  # type: ignore[valid-type]


def _form_boolean_schema(schema: dict[str, Any]) -> None:
    """A form field is text: these are the spellings accepted."""
    schema.pop("type", None)
    schema["enum"] = ["true", "false", "1", "0", ""]


class RefreshForm(RequestModel):
    prune: Annotated[bool, Field(description=PRUNE_TEXT, json_schema_extra=_form_boolean_schema),  # type: ignore[valid-type]
                     _check(api_params.boolean, typed=False)] = False


def _refuse_text_image(fields: Any) -> Any:
    """In JSON or a urlencoded form, 'image' can only be text: a URL or path we never open."""
    if isinstance(fields, dict) and "image" in fields:
        raise api_params.InvalidParameter(api_params.NOT_A_FILE)
    return fields


def _exactly_one_of(*names: str) -> Callable[[Any], Any]:
    def check(fields: Any) -> Any:
        if isinstance(fields, dict):
            given = [name for name in names if name in fields]
            if len(given) != 1:
                problem = "nothing to search for" if not given else f"give only one of {', '.join(given)}"
                raise api_params.InvalidParameter(
                    f"{problem}: upload an 'image' file, or give an indexed 'image_id', "
                    "or the 'query' digest of an earlier upload")
        return fields

    return check


def _upload_only(fields: Any) -> Any:
    if isinstance(fields, dict):
        references = [name for name in ("image_id", "query") if name in fields]
        if "image" not in fields and references:
            raise api_params.InvalidParameter("multipart/form-data is for uploading an 'image' file; send "
                                              f"{references[0]} as JSON or as a urlencoded form")
        _exactly_one_of("image", "image_id", "query")(fields)
    return fields


def _one_of_schema(*names: str) -> dict[str, Any]:
    return {"oneOf": [{"required": [name]} for name in names]}


@dataclass(frozen=True)
class RequestModels:
    """The request models whose limits come from the app's settings."""

    search_json: type[RequestModel]  # by reference, JSON
    search_form: type[RequestModel]  # by reference, urlencoded form
    search_upload: type[RequestModel]  # an uploaded image, multipart
    search_paging: type[RequestModel]  # k, offset, min_score in the query string
    image_list: type[RequestModel]


def request_models(settings: ApiSettings, max_upload_bytes: int | None) -> RequestModels:
    return _request_models(settings.default_k, settings.max_k, settings.max_offset, settings.max_list_limit,
                           settings.upload_max_pixels, max_upload_bytes)


@functools.cache
def _request_models(default_k: int, max_k: int, max_offset: int, max_list_limit: int, max_pixels: int,
                    max_upload_bytes: int | None) -> RequestModels:
    def paging(typed: bool) -> type[RequestModel]:
        class Paging(RequestModel):
            k: Integer(1, max_k, typed, "Number of hits per page.") = default_k  # type: ignore[valid-type]
            offset: Integer(0, max_offset, typed,  # type: ignore[valid-type]
                            "Hits to skip (use `next_offset` of the previous page).") = 0
            min_score: Score(typed, "Leave out hits whose cosine similarity is lower.") = None  # type: ignore[valid-type]
        return Paging

    def reference(typed: bool) -> type[RequestModel]:
        class Reference(paging(typed)):  # type: ignore[misc, valid-type]
            image_id: Integer(1, MAX_IMAGE_ID, typed, IMAGE_ID_TEXT) = None  # type: ignore[valid-type]
            query: Digest = Field(None, json_schema_extra=_no_default)
        return Reference

    def by_reference(typed: bool, title: str) -> type[RequestModel]:
        class ByReference(reference(typed)):  # type: ignore[misc, valid-type]
            model_config = ConfigDict(title=title, json_schema_extra=_one_of_schema("image_id", "query"))
            # "before" model validators run last-defined first: the text-image check comes first.
            _one = model_validator(mode="before")(_exactly_one_of("image_id", "query"))
            _text_image = model_validator(mode="before")(_refuse_text_image)
        return ByReference

    limit = f" (at most {max_upload_bytes} bytes and {max_pixels} pixels)" if max_upload_bytes else ""

    class SearchUpload(paging(False)):  # type: ignore[misc, valid-type]
        """An uploaded image file and the paging fields, nothing else (image_id and query go in
        JSON or a urlencoded form): what is sent is exactly what is documented."""
        model_config = ConfigDict(extra="forbid")
        image: bytes = Field(json_schema_extra={"format": "binary", "contentMediaType": "image/*"},
                             description=f"The query image file{limit}; anything that is not a decodable "
                                         "image is refused with 400, an image that needs more memory to decode "
                                         "than the server's decode budget with 413, and 503 with Retry-After "
                                         "asks to retry while other uploads hold that budget.")
        _only_an_upload = model_validator(mode="before")(_upload_only)

    class SearchPaging(RequestModel):
        """In the query string; a valid body field wins over it."""
        k: Integer(1, max_k, False, "Number of hits per page. Also accepted in the body, which wins.") = None  # type: ignore[valid-type]
        offset: Integer(0, max_offset, False, "Hits to skip. Also accepted in the body, which wins.") = None  # type: ignore[valid-type]
        min_score: Score(False, "Minimum cosine similarity. Also accepted in the body, which wins.") = None  # type: ignore[valid-type]

    class ImageListQuery(RequestModel):
        status: Choice(LIST_STATUSES, "Only images with this status.") = ImageStatus.INDEXED.value  # type: ignore[valid-type]
        offset: Integer(0, MAX_LIST_OFFSET, False, "Images to skip.") = 0  # type: ignore[valid-type]
        limit: Integer(1, max_list_limit, False, "Page size.") = 50  # type: ignore[valid-type]

    return RequestModels(search_json=by_reference(True, "SearchByReference"),
                         search_form=by_reference(False, "SearchByReferenceForm"),
                         search_upload=SearchUpload, search_paging=SearchPaging, image_list=ImageListQuery)


# ----------------------------------------------------------------- responses


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(ResponseModel):
    error: str


class ImageLinks(ResponseModel):
    url: str
    thumbnail_url: str
    image_url: str


class Image(ImageLinks):
    id: int
    path: str
    label: str | None
    status: Literal[STATUSES]  # type: ignore[valid-type]
    width: int | None
    height: int | None
    size_bytes: int
    sha256: str | None
    duplicate_of: int | None
    error: str | None


class Hit(ImageLinks):
    id: int
    path: str
    label: str | None
    score: float = Field(ge=-1, le=1, description="Cosine similarity to the query (of the index's whitened "
                                                  "vectors when it whitens): what ranks the hits.")
    rank: int = Field(ge=1)
    width: int | None = Field(default=None, description="Pixels, as decoded (EXIF orientation applied).")
    height: int | None = None
    size_bytes: int = Field(ge=0, description="Size of the image file.")
    explain_url: str
    verdict: Literal["similar", "dissimilar"] | None = Field(
        description="The collection's verdict on the pair (see the response's verdict_rule).")
    verdict_score: float | None = Field(description="The collection-normalised score the rule's cut applies to.")
    match: float | None = Field(ge=0, le=1, description="Match strength, 0..1: the figure to show. 0.5 at the "
                                                        "rule's cut, so the verdict is similar exactly when it is "
                                                        ">= 0.5; it means the same on every collection.")


class VerdictRule(ResponseModel):
    """How verdicts are made: a cut on the collection-normalised score (docs/explanations.md "Verdicts")."""

    kind: Literal["default", "fitted", "cosine"] = Field(
        description="default: the label-free rule for the collection's kind; fitted: fitted by `whysim "
                    "calibrate` on this collection's labelled images; cosine: a cosine cut (no collection to "
                    "judge against).")
    cut: float
    fitted: bool
    description: str = Field(description="In plain words: what similar means here and where the rule comes from.")
    normalisation: Literal["s-norm", "as-norm", "cosine"] | None = Field(
        default=None, description="s-norm: against the whole collection (class-level collections); as-norm: "
                                  "against each side's most similar photos (instance-level collections).")
    top: int | None = Field(default=None, description="as-norm: how many of each side's most similar photos.")
    spread: float | None = Field(default=None, description="How fast the match strength moves around the cut.")
    collection: str | None = Field(default=None, description="The kind of collection: class-level or "
                                                             "instance-level.")
    hits: int | None = None
    f1: float | None = None
    pairs: int | None = None
    balanced_accuracy: float | None = None
    source: str | None = None
    model: str | None = None


class UploadQuery(ResponseModel):
    kind: Literal["upload"]
    key: str = Field(description="Pass as `query` to /api/explain and /api/search (the SHA-256 digest).")
    digest: str
    width: int
    height: int
    image_url: str


class ImageQuery(Image):
    kind: Literal["image"]
    key: str = Field(description="The image id as text; pass as `query` to /api/explain.")


class SearchResponse(ResponseModel):
    query: UploadQuery | ImageQuery = Field(discriminator="kind")
    hits: list[Hit]
    k: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null at the end.")
    min_score: float | None
    model: str | None
    verdict_rule: VerdictRule


class ExplainedSide(ResponseModel):
    image_url: str
    width: int
    height: int
    factual_url: str
    counterfactual_url: str


class ExplainedQuery(ExplainedSide):
    key: str


class ExplainedHit(ExplainedSide):
    id: int


Grid = list[list[Annotated[float, Field(ge=0, le=1)]]]


class RawMaps(ResponseModel):
    shape: list[int] = Field(min_length=2, max_length=2)
    factual: Grid
    counterfactual: Grid


class RawPair(ResponseModel):
    """Low-resolution maps in [0, 1] for clients that draw their own overlays."""
    query: RawMaps
    hit: RawMaps


Box = Annotated[list[int], Field(min_length=4, max_length=4)]
Pair = Annotated[list[int], Field(min_length=2, max_length=2)]


class Match(ResponseModel):
    """One pair of regions (squares of feature-grid cells), with the part of the similarity they carry."""

    rank: int = Field(ge=1)
    query_box: Box = Field(description="[x0, y0, x1, y1] in the original query's pixels.")
    hit_box: Box = Field(description="[x0, y0, x1, y1] in the original hit's pixels.")
    share: float = Field(description="This pair's part of the similarity divided by the similarity; "
                                     "all pairs' shares sum to 1.")
    contribution: float = Field(description="This pair's part of the similarity.")
    distinctive: float = Field(description="What the hit region adds to the match beyond what the collection's "
                                           "photos share (the first-order loss of deleting it): matches are "
                                           "ordered by it, largest first.")
    query_cells: list[int] = Field(description="The query region's cells, row-major indexes into query_grid.")
    hit_cells: list[int] = Field(description="The hit region's cells, row-major indexes into hit_grid.")
    supports: bool = Field(description="True when the pair adds to the similarity (evidence for the match), "
                                       "false when it takes from it (evidence against).")
    evidence_share: float = Field(ge=0, le=1, description="The pair's part of all the evidence on its side: of "
                                                          "every cell pair's positive contribution when it supports "
                                                          "the match, else of every negative one.")


class Correspondence(ResponseModel):
    """For every cell of each image's feature grid (row-major), the cell of the other image it
    matches: what a client lights up on hover."""

    query_grid: Pair
    hit_grid: Pair
    query_size: Pair = Field(description="[width, height] of the original.")
    hit_size: Pair = Field(description="[width, height] of the original.")
    query_to_hit: list[int]
    hit_to_query: list[int]
    exact: bool = Field(description="False when a non-linear head was linearised.")
    remainder: float = Field(ge=0, description="Largest share of a head output spread as a bias (0 when exact).")
    share_sum: float


class ExplainResponse(ResponseModel):
    similarity: float = Field(description="Cosine similarity: the score that ranked the hit.")
    verdict: Literal["similar", "dissimilar"]
    threshold: float = Field(description="The cut the verdict applied to verdict_score.")
    verdict_score: float
    match: float = Field(ge=0, le=1, description="Match strength, 0..1 (>= 0.5 exactly when similar): the figure "
                                                 "to show; see Hit.match.")
    verdict_rule: VerdictRule
    method: str = Field(description="How the maps were made: gradcam (the default) or contribution.")
    matches: list[Match] = Field(description="Pairs of matched regions: the hit's regions that add the most "
                                             "to the match beyond what the collection's photos share (largest "
                                             "first), each with the query region pointing the most its way; no "
                                             "two share a cell on either side.")
    correspondence: Correspondence
    query: ExplainedQuery
    hit: ExplainedHit
    raw: RawPair


class ImageList(ResponseModel):
    images: list[Image]
    offset: int
    limit: int
    next_offset: int | None


PRIVATE_TEXT = "Paths on the server: only for clients sending the admin token, null for others."


class Stats(ResponseModel):
    data_dir: str | None = Field(description=PRIVATE_TEXT)
    images: int
    status: dict[str, int]
    vectors: int
    index_type: str | None
    ready: bool
    model: str | None
    model_card: dict[str, Any] | None
    collections: list[str] | None = Field(description=PRIVATE_TEXT)
    disk_bytes: int
    caches: dict[str, int]


class CollectionReport(ResponseModel):
    root: str
    report: dict[str, Any] | None = None
    error: str | None = None


class ReindexStatus(ResponseModel):
    state: Literal["idle", "running", "succeeded", "failed"]
    prune: bool
    started_at: str | None
    finished_at: str | None
    collections: list[CollectionReport]
    error: str | None


class Health(ResponseModel):
    status: Literal["ok", "unavailable"]
    vectors: int | None = None
    model: str | None = None
    model_loaded: bool | None = None
    error: str | None = None


class OpenApiDocument(BaseModel):
    """Any JSON object (the API's own description)."""

    model_config = ConfigDict(extra="allow")

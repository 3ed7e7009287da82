"""The web form channel: a support form on a page of ours, or embedded in the customer's website.

Pages and endpoints (mounted at the root of the web app)::

    GET     /form                       the default form (served with no configuration at all)
    GET     /form/<id>                  a form of the channels file's ``forms:`` section
    POST    /intake/form[/<id>]         urlencoded, multipart (attachments) or JSON
    OPTIONS /intake/form[/<id>]         CORS preflight, for the form's ``allowed_origins`` only

A submission is acknowledged only once the intake log committed it: the browser gets a page
naming the submission (the ticket number follows by email a moment later, when the worker has
routed it), a JSON client gets ``202 {"submission_id", "intake_id", "duplicate", "status"}``;
when nothing could be stored the answer is ``503`` with ``Retry-After``, "please try again".
The page carries a submission id (uuid4 hex) in a hidden field: a double submit is one message.

Configuration: the ``forms:`` section of the channels file (``OMNIDESK_CHANNELS_FILE``)::

    forms:
      - id: billing                     # /form/billing; letters, digits, '-', '_'
        title: Billing question
        intro: Questions about an invoice or a payment.
        queue: billing                  # a hint: the rules see it as header.x-form-queue
        allowed_origins: ["https://www.example.com"]   # may post JSON here, frame the form
        subject_required: false
        attachments: true
        fields:                         # extra fields; the rules see them as header.<name>
          - name: order_number
            label: Order number
            help: Starts with ORD-, on your invoice.
            max_length: 40
          - name: topic
            label: Topic
            type: select                # text, textarea, email, tel, url, number, select, checkbox
            options: [Invoice, Refund, Other]
            required: true

An entry with ``id: default`` replaces the built-in default form served at ``/form``.

Settings (environment, ``OMNIDESK_`` prefix)::

    FORM_RATE_LIMIT_PER_MINUTE      10        posts per client IP per minute, per web process (0: off)
    FORM_MAX_ATTACHMENT_BYTES       10485760  largest single attachment (10 MiB)
    FORM_MAX_TOTAL_ATTACHMENT_BYTES 26214400  all attachments of one submission together (25 MiB)
    FORM_MAX_ATTACHMENTS            5         attachments per submission (0: no attachments)
    FORM_ALLOWED_ATTACHMENT_TYPES   images, PDF, text, office documents (``type/*`` and
                                    ``prefix.*`` patterns allowed)
    FORM_SECRET                     random    key of the CSRF tokens and of the stored IP hashes.
                                              Unset, each process makes its own at start: set it
                                              when several web processes serve the form (a page
                                              served by one is posted to another) and to keep
                                              tokens valid across restarts.
    FORM_TOKEN_MAX_AGE_SECONDS      7200      how long a served page may be posted (then 403,
                                              "the form expired, reload the page")

Abuse: a honeypot field (bots that fill it are thanked and nothing is stored), the per-IP rate
limit (``429`` with ``Retry-After``), attachment count, size and type limits (``413``/``415``),
a CSRF token on the HTML form (``403`` when missing or expired), JSON posts from browsers only
from the form's ``allowed_origins`` (``403`` otherwise; no CORS headers for other origins). The
client IP is stored only as a keyed hash. Behind a proxy or load balancer, run uvicorn with
``--proxy-headers --forwarded-allow-ips=<proxy>`` so the rate limit sees the client, not the proxy.

Embedding the form on your own website
--------------------------------------

Without any script, frame the hosted form (the page works from 320px wide; when the form has
``allowed_origins``, only those sites may frame it)::

    <iframe src="https://desk.example.com/form/billing"
            title="Contact support" style="width:100%;max-width:40rem;height:60rem;border:0"
            loading="lazy"></iframe>

A site that builds its own form posts JSON (its origin must be in the form's ``allowed_origins``;
JSON needs no CSRF token; send your own ``submission_id``, 16-64 of ``[A-Za-z0-9_-]`` such as
``crypto.randomUUID()``, so that a retry is never a second ticket)::

    <script>
    async function sendToSupport(form) {
      const data = Object.fromEntries(new FormData(form));
      const response = await fetch("https://desk.example.com/intake/form/billing", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({
          submission_id: form.dataset.submissionId ||= crypto.randomUUID(),
          name: data.name, email: data.email, subject: data.subject, message: data.message,
          // attachments: [{filename: "a.png", content_type: "image/png", content_base64: "..."}]
        }),
      });
      const result = await response.json();
      if (response.status === 202) return result.submission_id;       // stored; email follows
      throw new Error(result.error.message);   // result.error.fields: {field: message}, on 422
    }
    </script>

JSON errors are ``{"error": {"code": ..., "message": ..., "fields": {...}}}`` with the codes
``invalid`` (422), ``too_large`` (413), ``unsupported_type`` / ``unsupported_media_type`` (415),
``origin_not_allowed`` (403), ``rate_limited`` (429), ``unknown_form`` (404), ``bad_json`` (400)
and ``unavailable`` (503: retry with the same ``submission_id``).

Stored payload: ``intake.webform.submission.StoredSubmission`` as canonical JSON; the Envelope is
built from it alone by ``intake.webform.parse`` (the ``details`` block: ``WebformDetails``).
"""

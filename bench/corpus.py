"""Deterministic email corpus for the intake benchmarks.

``generate_corpus(n, seed)`` builds ``n`` raw RFC 5322 messages, as a customer-support mailbox
receives them, from a seed and nothing else: the same ``(n, seed)`` gives the same bytes on every
machine (same Python minor version). The mix:

* about 30 % replies, in threads up to 5 replies deep, with ``In-Reply-To`` and the full
  ``References`` chain, ``Re:``/``RE:``/``AW:`` subjects and, in most replies, quoted history
  (``> `` quoting, or an Outlook ``-----Original Message-----`` block);
* text/plain, multipart/alternative and HTML-only bodies, quoted-printable, base64, 7-bit and
  8-bit transfer encodings, UTF-8 and legacy charsets (ISO-8859-x, KOI8-R, windows-125x,
  ISO-2022-JP, Shift_JIS, GB2312);
* RFC 2047 display names and subjects in Latin with accents, Cyrillic, Greek, CJK and Arabic;
* attachments on about 15 % of the messages (pdf, png, csv, txt, log; mostly small, a few up to
  about 500 KB), non-ASCII file names as RFC 2231 or RFC 2047;
* two destination queues, ``support@acme.test`` and ``billing@acme.test``; a thread stays in the
  queue of its first message.

``Corpus.manifest()`` is the ground truth the benchmark checks a help desk against: the expected
threads (ordered Message-IDs, root subject, queue) and, per message, its parent and attachments.

Command line::

    python -m bench.corpus --n 2000 --seed 1 --out DIR
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import html
import json
import math
import quopri
import random
import struct
import sys
import textwrap
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote as _pct

GENERATOR_VERSION = 1
MANIFEST_FORMAT = "omnidesk-bench-corpus/1"

SUPPORT_ADDRESS = "support@acme.test"
BILLING_ADDRESS = "billing@acme.test"
QUEUE_ADDRESSES: tuple[str, str] = (SUPPORT_ADDRESS, BILLING_ADDRESS)
_QUEUE_DISPLAY = {SUPPORT_ADDRESS: "Acme Support", BILLING_ADDRESS: "Acme Billing"}

REPLY_SHARE = 0.30  # share of messages that are replies (exact, by construction)
ATTACHMENT_SHARE = 0.15  # chance that a message carries attachments
BILLING_SHARE = 0.35  # chance that a new thread goes to the billing queue
MAX_REPLY_DEPTH = 5  # a reply chain goes at most 5 replies below its root
MAX_THREAD_SIZE = 8  # root + replies (branches allowed, depth still <= 5)
CORPUS_START = datetime(2025, 3, 3, 7, 0, tzinfo=UTC)
CORPUS_DAYS = 14

# --------------------------------------------------------------------------------------------
# vocabulary (written for this corpus)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lang:
    code: str
    weight: float
    names: tuple[tuple[str, str], ...]  # (display name, ASCII local part)
    domains: tuple[str, ...]
    legacy_charsets: tuple[str, ...]
    header_b: bool  # prefer RFC 2047 B encoding for this script
    support_subjects: tuple[str, ...]
    billing_subjects: tuple[str, ...]
    greeting: str
    sentences: tuple[str, ...]
    reply_sentences: tuple[str, ...]
    closing: str
    quote_intro: str  # {date} {name}
    reply_prefix: str = "Re: "
    tz_hours: tuple[float, ...] = (0.0,)
    attachment_names: dict[str, str] = field(default_factory=dict)


_LANGS: tuple[_Lang, ...] = (
    _Lang(
        code="en",
        weight=0.40,
        names=(
            ("Emily Carter", "emily.carter"),
            ("James O'Neill", "james.oneill"),
            ("Priya Natarajan", "priya.n"),
            ("Michael Brown", "mbrown"),
            ("Sarah Johnson", "sarah.johnson"),
            ("David Kim", "dkim"),
            ("Becker, Tom", "tom.becker"),
            ("Laura Smith", "laura"),
            ("Chen, Grace", "grace.chen"),
            ("Olivia Wright", "o.wright"),
        ),
        domains=("example.com", "example.net", "northwind.example", "contoso.example"),
        legacy_charsets=("us-ascii",),
        header_b=False,
        support_subjects=(
            "Cannot log in after password reset",
            "App crashes when exporting report {num}",
            "Order {num} has not arrived yet",
            "Two-factor codes not received",
            "Error 502 on the dashboard",
            "How do I add a new user to our account?",
            "Data import stuck at 99%",
            "Webhook deliveries failing since {num}",
        ),
        billing_subjects=(
            "Invoice {num} charged twice",
            "Refund for order {num}",
            "Please update our VAT number",
            "Wrong amount on invoice {num}",
            "Cancel subscription and send final invoice",
        ),
        greeting="Hello,",
        sentences=(
            "Since this morning none of us can sign in to the account.",
            "The error message says the session has expired, even right after logging in.",
            "We tried two different browsers and cleared the cache, with the same result.",
            "Could you please look into this as soon as possible? Our team depends on it.",
            "I attached the file we were sent, in case it helps.",
            "Our reference for this is {num}.",
            "This started after the update last Tuesday.",
            "Our card was charged twice for the same invoice.",
            "The amount on the invoice does not match the quote we accepted.",
            "Please let me know if you need anything else from us.",
        ),
        reply_sentences=(
            "Thanks for getting back to me so quickly.",
            "Unfortunately the problem is still there after following your steps.",
            "Here is the additional information you asked for.",
            "It works now, but only in the desktop app.",
            "Any news on this? We are still waiting.",
            "I am sending the file again in case it got lost.",
        ),
        closing="Best regards,",
        quote_intro="On {date}, {name} wrote:",
        tz_hours=(-5.0, -8.0, 0.0, 1.0, -4.0, 10.0),
    ),
    _Lang(
        code="de",
        weight=0.10,
        names=(
            ("Jürgen Weiß", "juergen.weiss"),
            ("Anna Müller", "anna.mueller"),
            ("Björn Schäfer", "bjoern.schaefer"),
            ("Käthe Groß", "kaethe.gross"),
            ("Lukas Höfler", "lukas.hoefler"),
            ("Sören Krämer", "soeren.kraemer"),
        ),
        domains=("beispiel.example", "firma-gmbh.example", "mail.example"),
        legacy_charsets=("iso-8859-1", "iso-8859-15", "windows-1252"),
        header_b=False,
        support_subjects=(
            "Anmeldung nach Passwortänderung nicht möglich",
            "Bestellung {num} noch nicht geliefert",
            "Fehlermeldung beim Export – bitte um Hilfe",
            "Zugang für neue Kollegin einrichten",
        ),
        billing_subjects=(
            "Rechnung {num} doppelt abgebucht",
            "Gutschrift für Bestellung {num}",
            "Änderung der Rechnungsadresse",
        ),
        greeting="Guten Tag,",
        sentences=(
            "seit heute früh können wir uns nicht mehr anmelden.",
            "Die Fehlermeldung lautet „Sitzung abgelaufen“, obwohl wir gerade erst eingeloggt sind.",
            "Wir haben es mit zwei Browsern versucht und den Cache geleert – ohne Erfolg.",
            "Könnten Sie sich das bitte möglichst bald ansehen? Wir sind darauf angewiesen.",
            "Unsere Vorgangsnummer lautet {num}.",
            "Die Rechnung wurde zweimal von unserem Konto abgebucht.",
            "Bitte schicken Sie uns eine korrigierte Rechnung mit unserer USt-IdNr.",
            "Für Rückfragen stehe ich gerne zur Verfügung.",
        ),
        reply_sentences=(
            "vielen Dank für die schnelle Rückmeldung.",
            "Leider besteht das Problem weiterhin, auch nach Ihren Schritten.",
            "Anbei die gewünschten Informationen.",
            "Gibt es schon Neuigkeiten? Wir warten noch auf eine Lösung.",
        ),
        closing="Mit freundlichen Grüßen",
        quote_intro="Am {date} schrieb {name}:",
        reply_prefix="AW: ",
        tz_hours=(1.0, 2.0),
        attachment_names={"pdf": "Rechnung_März_{num}.pdf", "png": "Bildschirmfoto {num}.png"},
    ),
    _Lang(
        code="fr",
        weight=0.08,
        names=(
            ("François Lefèvre", "francois.lefevre"),
            ("Zoë Dubois", "zoe.dubois"),
            ("Hélène Garçon", "helene.garcon"),
            ("Jérôme Bénard", "jerome.benard"),
            ("Anaïs Moreau", "anais.moreau"),
        ),
        domains=("exemple.example", "societe.example", "mail.example"),
        legacy_charsets=("iso-8859-1", "iso-8859-15", "windows-1252"),
        header_b=False,
        support_subjects=(
            "Impossible de me connecter à mon compte",
            "Commande {num} toujours pas reçue",
            "Problème d'accès après la mise à jour",
            "Écran blanc à l'ouverture de l'application",
        ),
        billing_subjects=(
            "Facture {num} prélevée deux fois",
            "Demande de remboursement – commande {num}",
            "Erreur sur la facture {num}",
        ),
        greeting="Bonjour,",
        sentences=(
            "depuis ce matin, personne dans l'équipe ne peut se connecter.",
            "Le message d'erreur indique que la session a expiré, même juste après la connexion.",
            "Nous avons essayé deux navigateurs différents et vidé le cache, sans succès.",
            "Pourriez-vous regarder cela rapidement ? C'est assez urgent pour nous.",
            "Notre référence interne est {num}.",
            "La facture a été prélevée deux fois sur notre compte.",
            "Merci de nous envoyer une facture corrigée avec notre numéro de TVA.",
            "Je reste à votre disposition pour toute information complémentaire.",
        ),
        reply_sentences=(
            "merci pour votre réponse rapide.",
            "Malheureusement, le problème persiste après avoir suivi vos étapes.",
            "Voici les informations complémentaires demandées.",
            "Avez-vous du nouveau ? Nous attendons toujours une solution.",
        ),
        closing="Cordialement,",
        quote_intro="Le {date}, {name} a écrit :",
        tz_hours=(1.0, 2.0),
        attachment_names={"pdf": "facture_réglée_{num}.pdf", "csv": "relevé_{num}.csv"},
    ),
    _Lang(
        code="es",
        weight=0.07,
        names=(
            ("José Martínez", "jose.martinez"),
            ("Begoña Núñez", "begona.nunez"),
            ("Íñigo Peña", "inigo.pena"),
            ("María Gómez", "maria.gomez"),
        ),
        domains=("ejemplo.example", "empresa.example", "mail.example"),
        legacy_charsets=("iso-8859-1", "windows-1252"),
        header_b=False,
        support_subjects=(
            "No puedo iniciar sesión",
            "El pedido {num} no ha llegado",
            "Error al exportar el informe",
            "¿Cómo añado un usuario nuevo?",
        ),
        billing_subjects=(
            "Cobro duplicado en la factura {num}",
            "Solicitud de reembolso del pedido {num}",
            "Cambio de datos de facturación",
        ),
        greeting="Hola,",
        sentences=(
            "desde esta mañana no podemos acceder a la cuenta.",
            "El mensaje de error dice que la sesión ha caducado, incluso justo después de entrar.",
            "Hemos probado con dos navegadores distintos y borrado la caché, sin éxito.",
            "¿Podrían revisarlo cuanto antes? Es bastante urgente para nosotros.",
            "Nuestro número de referencia es {num}.",
            "Nos han cobrado dos veces la misma factura.",
            "Quedo a la espera de su respuesta.",
        ),
        reply_sentences=(
            "gracias por la respuesta tan rápida.",
            "Por desgracia el problema continúa después de seguir sus pasos.",
            "Les envío la información adicional que pidieron.",
            "¿Hay alguna novedad? Seguimos esperando.",
        ),
        closing="Un saludo,",
        quote_intro="El {date}, {name} escribió:",
        tz_hours=(1.0, 2.0, -3.0, -6.0),
        attachment_names={"pdf": "factura_año_{num}.pdf"},
    ),
    _Lang(
        code="ru",
        weight=0.10,
        names=(
            ("Анна Петрова", "anna.petrova"),
            ("Дмитрий Смирнов", "d.smirnov"),
            ("Ольга Кузнецова", "olga.k"),
            ("Сергей Иванов", "s.ivanov"),
            ("Юлия Соколова", "yulia.sokolova"),
        ),
        domains=("primer.example", "kompaniya.example", "mail.example"),
        legacy_charsets=("koi8-r", "windows-1251"),
        header_b=True,
        support_subjects=(
            "Не могу войти в личный кабинет",
            "Заказ {num} до сих пор не доставлен",
            "Ошибка при выгрузке отчёта",
            "Не приходят коды подтверждения",
        ),
        billing_subjects=(
            "Двойное списание по счёту {num}",
            "Возврат средств за заказ {num}",
            "Неверная сумма в счёте {num}",
        ),
        greeting="Здравствуйте!",
        sentences=(
            "С сегодняшнего утра никто из нас не может войти в систему.",
            "В сообщении об ошибке сказано, что сессия истекла, хотя мы только что вошли.",
            "Мы пробовали два разных браузера и очищали кэш — безрезультатно.",
            "Посмотрите, пожалуйста, как можно скорее: для нас это срочно.",
            "Наш номер обращения — {num}.",
            "Со счёта дважды списали оплату по одному и тому же счёту.",
            "Если нужна дополнительная информация, напишите мне.",
        ),
        reply_sentences=(
            "Спасибо за быстрый ответ.",
            "К сожалению, проблема сохраняется и после ваших рекомендаций.",
            "Высылаю дополнительную информацию, которую вы просили.",
            "Есть ли новости? Мы всё ещё ждём решения.",
        ),
        closing="С уважением,",
        quote_intro="{date}, {name} пишет:",
        tz_hours=(3.0, 5.0, 7.0),
        attachment_names={"pdf": "счёт_{num}.pdf", "txt": "описание ошибки.txt"},
    ),
    _Lang(
        code="el",
        weight=0.07,
        names=(
            ("Γιώργος Παπαδόπουλος", "g.papadopoulos"),
            ("Μαρία Κωνσταντίνου", "maria.k"),
            ("Νίκος Αλεξίου", "nikos.alexiou"),
            ("Ελένη Δημητρίου", "eleni.d"),
        ),
        domains=("paradeigma.example", "etaireia.example"),
        legacy_charsets=("iso-8859-7", "windows-1253"),
        header_b=True,
        support_subjects=(
            "Δεν μπορώ να συνδεθώ στον λογαριασμό μου",
            "Η παραγγελία {num} δεν έχει φτάσει",
            "Σφάλμα κατά την εξαγωγή αναφοράς",
        ),
        billing_subjects=(
            "Διπλή χρέωση στο τιμολόγιο {num}",
            "Αίτημα επιστροφής χρημάτων για την παραγγελία {num}",
        ),
        greeting="Καλησπέρα σας,",
        sentences=(
            "από το πρωί δεν μπορούμε να συνδεθούμε στον λογαριασμό.",
            "Το μήνυμα σφάλματος λέει ότι η συνεδρία έληξε, αμέσως μετά τη σύνδεση.",
            "Δοκιμάσαμε δύο διαφορετικούς φυλλομετρητές και καθαρίσαμε την προσωρινή μνήμη.",
            "Μπορείτε να το δείτε το συντομότερο; Είναι επείγον για εμάς.",
            "Ο αριθμός αναφοράς μας είναι {num}.",
            "Χρεωθήκαμε δύο φορές για το ίδιο τιμολόγιο.",
        ),
        reply_sentences=(
            "Ευχαριστώ για τη γρήγορη απάντηση.",
            "Δυστυχώς το πρόβλημα παραμένει.",
            "Σας στέλνω τις πληροφορίες που ζητήσατε.",
            "Υπάρχει κάποιο νέο; Περιμένουμε ακόμα.",
        ),
        closing="Με εκτίμηση,",
        quote_intro="Στις {date}, ο/η {name} έγραψε:",
        tz_hours=(2.0, 3.0),
        attachment_names={"png": "στιγμιότυπο_{num}.png"},
    ),
    _Lang(
        code="ja",
        weight=0.07,
        names=(
            ("山田 太郎", "taro.yamada"),
            ("佐藤 花子", "hanako.sato"),
            ("鈴木 一郎", "ichiro.suzuki"),
            ("高橋 美咲", "misaki.t"),
        ),
        domains=("rei.example", "kaisha.example"),
        legacy_charsets=("iso-2022-jp", "shift_jis"),
        header_b=True,
        support_subjects=(
            "ログインできません",
            "注文番号{num}の商品が届きません",
            "レポートの出力でエラーが発生します",
            "新しいユーザーの追加方法について",
        ),
        billing_subjects=("請求書{num}の二重請求について", "注文{num}の返金のお願い"),
        greeting="お世話になっております。",
        sentences=(
            "今朝からアカウントにログインできなくなりました。",
            "ログイン直後にもかかわらず、セッションの有効期限が切れたと表示されます。",
            "別のブラウザでも試し、キャッシュも削除しましたが改善しません。",
            "お手数ですが、至急ご確認いただけますでしょうか。",
            "こちらの管理番号は{num}です。",
            "同じ請求書で二回引き落とされています。",
        ),
        reply_sentences=(
            "早速のご返信ありがとうございます。",
            "ご案内の手順を試しましたが、まだ解決しません。",
            "ご依頼の追加情報をお送りします。",
            "その後いかがでしょうか。",
        ),
        closing="よろしくお願いいたします。",
        quote_intro="{date} {name} さんは書きました:",
        tz_hours=(9.0,),
        attachment_names={"pdf": "請求書_{num}.pdf", "log": "エラーログ.log"},
    ),
    _Lang(
        code="zh",
        weight=0.05,
        names=(
            ("李伟", "li.wei"),
            ("王芳", "wang.fang"),
            ("张敏", "zhang.min"),
            ("陈静", "chen.jing"),
        ),
        domains=("lizi.example", "gongsi.example"),
        legacy_charsets=("gb2312", "gbk"),
        header_b=True,
        support_subjects=("无法登录账户", "订单{num}尚未收到", "导出报表时出错", "如何添加新用户"),
        billing_subjects=("发票{num}重复扣款", "订单{num}退款申请"),
        greeting="您好，",
        sentences=(
            "从今天早上开始我们无法登录账户。",
            "刚登录就提示会话已过期。",
            "我们换了两个浏览器并清除了缓存，问题依旧。",
            "请尽快帮我们查看，谢谢。",
            "我们的参考编号是{num}。",
            "同一张发票被扣款两次。",
        ),
        reply_sentences=(
            "感谢您的快速回复。",
            "按照您的步骤操作后问题仍然存在。",
            "附上您需要的补充信息。",
            "请问有进展吗？",
        ),
        closing="此致",
        quote_intro="{name} 于 {date} 写道：",
        tz_hours=(8.0,),
        attachment_names={"csv": "账单明细_{num}.csv"},
    ),
    _Lang(
        code="ar",
        weight=0.06,
        names=(
            ("محمد الأحمد", "m.alahmad"),
            ("فاطمة الزهراء", "fatima.z"),
            ("عمر خالد", "omar.khaled"),
            ("ليلى حسن", "layla.hassan"),
        ),
        domains=("mithal.example", "sharika.example"),
        legacy_charsets=("windows-1256", "iso-8859-6"),
        header_b=True,
        support_subjects=(
            "لا أستطيع تسجيل الدخول إلى حسابي",
            "الطلب رقم {num} لم يصل بعد",
            "خطأ عند تصدير التقرير",
        ),
        billing_subjects=("خصم مزدوج في الفاتورة رقم {num}", "طلب استرداد المبلغ للطلب {num}"),
        greeting="مرحباً،",
        sentences=(
            "منذ صباح اليوم لا نستطيع تسجيل الدخول إلى الحساب.",
            "تظهر رسالة تفيد بأن الجلسة انتهت مباشرة بعد تسجيل الدخول.",
            "جربنا متصفحين مختلفين ومسحنا ذاكرة التخزين المؤقت دون فائدة.",
            "نرجو مراجعة الأمر في أقرب وقت ممكن.",
            "رقمنا المرجعي هو {num}.",
            "تم خصم المبلغ مرتين لنفس الفاتورة.",
        ),
        reply_sentences=(
            "شكراً على الرد السريع.",
            "للأسف ما زالت المشكلة قائمة.",
            "أرسل لكم المعلومات الإضافية المطلوبة.",
            "هل من جديد؟",
        ),
        closing="مع التحية،",
        quote_intro="في {date}، كتب {name}:",
        tz_hours=(3.0, 4.0, 2.0),
        attachment_names={"pdf": "فاتورة_{num}.pdf"},
    ),
)

_LANG_BY_CODE = {lang.code: lang for lang in _LANGS}


@dataclass(frozen=True)
class _Client:
    name: str
    weight: float
    header: tuple[str, str] | None  # (header name, value)
    body_weights: tuple[float, float, float]  # plain, alternative, html-only
    quote_style: str  # "gt" or "outlook"
    reply_prefix: str | None  # forces a prefix (Outlook says RE:/AW:)


_CLIENTS: tuple[_Client, ...] = (
    _Client(
        "thunderbird",
        0.25,
        ("User-Agent", "Mozilla Thunderbird 128.4.0"),
        (0.80, 0.15, 0.05),
        "gt",
        None,
    ),
    _Client(
        "outlook",
        0.30,
        ("X-Mailer", "Microsoft Outlook 16.0"),
        (0.25, 0.60, 0.15),
        "outlook",
        "RE: ",
    ),
    _Client(
        "applemail",
        0.15,
        ("X-Mailer", "Apple Mail (2.3774.600.62)"),
        (0.40, 0.50, 0.10),
        "gt",
        None,
    ),
    _Client("webmail", 0.20, None, (0.45, 0.20, 0.35), "gt", None),
    _Client("mutt", 0.10, ("User-Agent", "NeoMutt/20231103"), (1.0, 0.0, 0.0), "gt", None),
)


@dataclass(frozen=True)
class _Customer:
    lang: _Lang
    display: str
    address: str
    tz: timezone
    client: _Client
    company: str


# --------------------------------------------------------------------------------------------
# public types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedMessage:
    """One message of the corpus.

    ``message_id`` and ``parent_id`` are written with their angle brackets, as they appear in
    the ``Message-ID``/``In-Reply-To`` headers. ``index`` is the 1-based position in date order
    (the file name in ``Corpus.write`` is ``f"{index:05d}.eml"``).
    """

    raw: bytes
    message_id: str
    thread_id: str
    parent_id: str | None
    to_address: str
    attachment_count: int
    index: int = 0
    depth: int = 0
    references: tuple[str, ...] = ()
    subject: str = ""
    from_address: str = ""
    from_name: str = ""
    date: str = ""  # ISO 8601, UTC
    language: str = ""
    body_kind: str = ""  # plain | alternative | html
    charset: str = ""
    transfer_encodings: tuple[str, ...] = ()  # of the body text parts
    attachment_names: tuple[str, ...] = ()
    attachment_sizes: tuple[int, ...] = ()
    attachment_sha256: tuple[str, ...] = ()  # of the decoded attachment bytes
    has_quote: bool = False

    @property
    def file_name(self) -> str:
        return f"{self.index:05d}.eml"

    def meta(self) -> dict[str, Any]:
        """Everything but the raw bytes, as JSON-ready values."""
        return {
            "file": self.file_name,
            "index": self.index,
            "thread": self.thread_id,
            "parent": self.parent_id,
            "depth": self.depth,
            "references": list(self.references),
            "to": self.to_address,
            "from": self.from_address,
            "from_name": self.from_name,
            "subject": self.subject,
            "date": self.date,
            "language": self.language,
            "body_kind": self.body_kind,
            "charset": self.charset,
            "transfer_encodings": list(self.transfer_encodings),
            "attachment_count": self.attachment_count,
            "attachments": list(self.attachment_names),
            "attachment_sizes": list(self.attachment_sizes),
            "attachment_sha256": list(self.attachment_sha256),
            "has_quote": self.has_quote,
            "size": len(self.raw),
        }


@dataclass
class Corpus:
    messages: list[GeneratedMessage]
    seed: int
    n: int

    # -- ground truth ----------------------------------------------------------------------

    def threads(self) -> dict[str, list[GeneratedMessage]]:
        out: dict[str, list[GeneratedMessage]] = {}
        for m in self.messages:
            out.setdefault(m.thread_id, []).append(m)
        return out

    def manifest(self) -> dict[str, Any]:
        threads: dict[str, Any] = {}
        for tid, msgs in self.threads().items():
            root = msgs[0]
            threads[tid] = {
                "queue": root.to_address,
                "root_subject": root.subject,
                "root": root.message_id,
                "messages": [m.message_id for m in msgs],
                "max_depth": max(m.depth for m in msgs),
            }
        replies = sum(1 for m in self.messages if m.parent_id is not None)
        by_queue: dict[str, int] = {q: 0 for q in QUEUE_ADDRESSES}
        threads_by_queue: dict[str, int] = {q: 0 for q in QUEUE_ADDRESSES}
        for m in self.messages:
            by_queue[m.to_address] += 1
            if m.parent_id is None:
                threads_by_queue[m.to_address] += 1
        return {
            "format": MANIFEST_FORMAT,
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "n": self.n,
            "queues": list(QUEUE_ADDRESSES),
            "counts": {
                "messages": len(self.messages),
                "threads": len(threads),
                "replies": replies,
                "messages_with_attachments": sum(1 for m in self.messages if m.attachment_count),
                "attachments": sum(m.attachment_count for m in self.messages),
                "bytes": sum(len(m.raw) for m in self.messages),
                "messages_by_queue": by_queue,
                "threads_by_queue": threads_by_queue,
            },
            "threads": threads,
            "messages": {m.message_id: m.meta() for m in self.messages},
        }

    # -- delivery order ----------------------------------------------------------------------

    def shuffled(self, seed: int) -> list[GeneratedMessage]:
        """The messages in a random order (deterministic from ``seed``), e.g. for delivery."""
        order = list(self.messages)
        random.Random(f"omnidesk-bench-shuffle:{seed}").shuffle(order)
        return order

    # -- files -----------------------------------------------------------------------------------

    def write(self, directory: str | Path) -> Path:
        """Write ``NNNNN.eml`` files (date order) and ``manifest.json``; return the directory."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for m in self.messages:
            (d / m.file_name).write_bytes(m.raw)
        (d / "manifest.json").write_text(
            json.dumps(self.manifest(), ensure_ascii=False, indent=1), encoding="utf-8"
        )
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Corpus:
        """Read back a corpus written by ``write``."""
        d = Path(directory)
        manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
        msgs: list[GeneratedMessage] = []
        for mid, meta in manifest["messages"].items():
            msgs.append(
                GeneratedMessage(
                    raw=(d / meta["file"]).read_bytes(),
                    message_id=mid,
                    thread_id=meta["thread"],
                    parent_id=meta["parent"],
                    to_address=meta["to"],
                    attachment_count=meta["attachment_count"],
                    index=meta["index"],
                    depth=meta["depth"],
                    references=tuple(meta["references"]),
                    subject=meta["subject"],
                    from_address=meta["from"],
                    from_name=meta["from_name"],
                    date=meta["date"],
                    language=meta["language"],
                    body_kind=meta["body_kind"],
                    charset=meta["charset"],
                    transfer_encodings=tuple(meta["transfer_encodings"]),
                    attachment_names=tuple(meta["attachments"]),
                    attachment_sizes=tuple(meta["attachment_sizes"]),
                    attachment_sha256=tuple(meta["attachment_sha256"]),
                    has_quote=meta["has_quote"],
                )
            )
        msgs.sort(key=lambda m: m.index)
        return cls(messages=msgs, seed=manifest["seed"], n=manifest["n"])


# --------------------------------------------------------------------------------------------
# encoding helpers
# --------------------------------------------------------------------------------------------

_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def _q_encode(data: bytes) -> str:
    out = []
    for b in data:
        if b == 0x20:
            out.append("_")
        elif b in _Q_SAFE:
            out.append(chr(b))
        else:
            out.append(f"={b:02X}")
    return "".join(out)


def encode_words(text: str, charset: str, b_encoding: bool) -> list[str]:
    """RFC 2047 encoded-words of at most 75 characters, never splitting a character."""
    tag = "B" if b_encoding else "Q"

    def enc(chunk: str) -> str:
        data = chunk.encode(charset)
        body = base64.b64encode(data).decode("ascii") if b_encoding else _q_encode(data)
        return f"=?{charset}?{tag}?{body}?="

    words: list[str] = []
    current = ""
    for ch in text:
        candidate = current + ch
        if current and len(enc(candidate)) > 75:
            words.append(enc(current))
            current = ch
        else:
            current = candidate
    if current:
        words.append(enc(current))
    return words


def _header_text(text: str, charset: str, b_encoding: bool, prefix: str = "") -> str:
    """A header value: ASCII as is, otherwise ``prefix`` + folded encoded-words."""
    if text.isascii():
        return prefix + text
    words = encode_words(text, charset, b_encoding)
    return prefix + "\r\n ".join(words)


def _charset_for(text: str, preferred: str) -> str:
    """``preferred`` when it can encode ``text``, else UTF-8."""
    if preferred == "us-ascii":
        return "us-ascii" if text.isascii() else "utf-8"
    try:
        text.encode(preferred)
    except UnicodeEncodeError:
        return "utf-8"
    return preferred


_ATEXT_SPECIALS = set('()<>[]:;@\\,."')


def _format_address(display: str, address: str, charset: str, b_encoding: bool) -> str:
    if not display:
        return address
    if not display.isascii():
        # one encoded-word for the whole name: decoders disagree on the space between two
        # adjacent encoded-words inside a phrase (RFC 2047 says none; Python's parser adds one)
        cs = _charset_for(display, charset)
        words = encode_words(display, cs, b_encoding)
        if len(words) > 1:
            words = encode_words(display, cs, True)
        return "\r\n ".join(words) + f" <{address}>"
    if any(c in _ATEXT_SPECIALS for c in display):
        escaped = display.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{address}>'
    return f"{display} <{address}>"


def _fold_ids(name: str, ids: Sequence[str]) -> str:
    return f"{name}: " + "\r\n ".join(ids)


def _wrap(text: str, width: int = 72) -> list[str]:
    """Wrap one paragraph; scripts written without spaces are cut every 36 characters."""
    if " " in text:
        return textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False)
    return [text[i : i + 36] for i in range(0, len(text), 36)] or [""]


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _encode_body(text: str, charset: str, cte: str) -> bytes:
    """Body bytes (CRLF lines) for a text part in ``charset`` with transfer encoding ``cte``."""
    data = _crlf(text).encode(charset)
    if cte == "base64":
        return _b64_lines(data)
    if cte == "quoted-printable":
        qp = quopri.encodestring(data.replace(b"\r\n", b"\n"), quotetabs=False)
        return qp.replace(b"\n", b"\r\n")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _b64_lines(data: bytes) -> bytes:
    enc = base64.b64encode(data)
    return b"".join(enc[i : i + 76] + b"\r\n" for i in range(0, len(enc), 76)) or b"\r\n"


# --------------------------------------------------------------------------------------------
# attachments
# --------------------------------------------------------------------------------------------


def _attachment_size(rng: random.Random, kind: str) -> int:
    lo, hi = {
        "pdf": (18_000, 180_000),
        "png": (6_000, 140_000),
        "csv": (800, 40_000),
        "txt": (300, 8_000),
        "log": (2_000, 90_000),
    }[kind]
    if kind in ("pdf", "png", "log") and rng.random() < 0.04:
        lo, hi = 300_000, 500_000
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _make_pdf(rng: random.Random, size: int, title: str) -> bytes:
    text = title.encode("latin-1", "replace").replace(b"(", b"[").replace(b")", b"]")
    content = b"BT /F1 14 Tf 72 760 Td (" + text + b") Tj 0 -22 Td (Generated document) Tj ET"
    width = 256
    height = max(1, (size - 1200) // width)
    pixels = rng.randbytes(width * height)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>"
        ),
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        (
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
            b"/BitsPerComponent 8 /Length %d >>\nstream\n" % (width, height, len(pixels))
        )
        + pixels
        + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", binascii.crc32(kind + data) & 0xFFFFFFFF)
    )


def _make_png(rng: random.Random, size: int) -> bytes:
    width = 320
    height = max(1, size // (width * 3))
    rows = bytearray()
    for _ in range(height):
        rows += b"\x00" + rng.randbytes(width * 3)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 1))
        + _png_chunk(b"IEND", b"")
    )


_SKUS = ("A-100", "A-220", "B-310", "C-042", "D-900", "SUP-1Y", "SUP-3Y", "LIC-SEAT")


def _make_csv(rng: random.Random, size: int, non_ascii: bool) -> bytes:
    lines = ["date,invoice,sku,description,qty,unit_price,total"]
    desc = (
        ("Licence seat", "Support plan", "Setup fee", "Überweisung", "Remise", "Доставка")
        if non_ascii
        else ("Licence seat", "Support plan", "Setup fee", "Shipping", "Discount")
    )
    total = len(lines[0])
    day = 1
    while total < size:
        qty = rng.randint(1, 40)
        price = rng.randint(500, 99_000) / 100
        line = (
            f"2025-02-{day:02d},INV-{rng.randint(10000, 99999)},{rng.choice(_SKUS)},"
            f"{rng.choice(desc)},{qty},{price:.2f},{qty * price:.2f}"
        )
        lines.append(line)
        total += len(line) + 2
        day = day % 28 + 1
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


_LOG_LEVELS = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")
_LOG_PATHS = ("/api/v2/orders", "/api/v2/invoices", "/login", "/export", "/api/v2/users")


def _make_log(rng: random.Random, size: int) -> bytes:
    t = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
    lines: list[str] = []
    total = 0
    while total < size:
        t += timedelta(milliseconds=rng.randint(1, 4000))
        level = rng.choice(_LOG_LEVELS)
        line = (
            f"{t.strftime('%Y-%m-%dT%H:%M:%S')}.{t.microsecond // 1000:03d}Z {level:<5} "
            f"[worker-{rng.randint(1, 8)}] req={rng.getrandbits(48):012x} "
            f"path={rng.choice(_LOG_PATHS)} status={rng.choice((200, 200, 200, 401, 500, 502))} "
            f"dur={rng.randint(2, 3000)}ms"
        )
        lines.append(line)
        total += len(line) + 2
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _make_txt(rng: random.Random, size: int, lang: _Lang) -> bytes:
    pool = lang.sentences + lang.reply_sentences
    paras: list[str] = []
    total = 0
    while total < size:
        para = " ".join(
            rng.choice(pool).replace("{num}", str(rng.randint(1000, 99999))) for _ in range(3)
        )
        paras.append("\n".join(_wrap(para)))
        total += len(para.encode("utf-8")) + 2
    return _crlf("\n\n".join(paras) + "\n").encode("utf-8")


@dataclass(frozen=True)
class _Attachment:
    name: str
    content_type: str
    data: bytes
    text: bool


def _make_attachment(rng: random.Random, lang: _Lang, num: int) -> _Attachment:
    kind = rng.choices(("pdf", "png", "csv", "txt", "log"), weights=(30, 25, 15, 15, 15))[0]
    size = _attachment_size(rng, kind)
    default_names = {
        "pdf": f"invoice-{num}.pdf",
        "png": f"screenshot-{num}.png",
        "csv": f"statement-{num}.csv",
        "txt": "notes.txt",
        "log": f"export-{num}.log",
    }
    name = default_names[kind]
    if kind in lang.attachment_names and rng.random() < 0.6:
        name = lang.attachment_names[kind].replace("{num}", str(num))
    if kind == "pdf":
        return _Attachment(name, "application/pdf", _make_pdf(rng, size, f"Document {num}"), False)
    if kind == "png":
        return _Attachment(name, "image/png", _make_png(rng, size), False)
    if kind == "csv":
        return _Attachment(name, "text/csv", _make_csv(rng, size, lang.code != "en"), True)
    if kind == "log":
        return _Attachment(name, "text/plain", _make_log(rng, size), True)
    return _Attachment(name, "text/plain", _make_txt(rng, size, lang), True)


def _attachment_part(rng: random.Random, att: _Attachment) -> bytes:
    headers: list[str] = []
    ascii_name = att.name.isascii()
    if ascii_name:
        name_param = f'name="{att.name}"'
        disp_param = f'filename="{att.name}"'
    elif rng.random() < 0.7:  # RFC 2231, the standard way
        name_param = f"name*=utf-8''{_pct(att.name, safe='')}"
        disp_param = f"filename*=utf-8''{_pct(att.name, safe='')}"
    else:  # RFC 2047 inside the quoted parameter, as many clients do
        words = " ".join(encode_words(att.name, "utf-8", True))
        name_param = f'name="{words}"'
        disp_param = f'filename="{words}"'
    ctype = att.content_type
    if att.text:
        ctype += '; charset="utf-8"'
    headers.append(f"Content-Type: {ctype};\r\n {name_param}")
    headers.append(f"Content-Disposition: attachment;\r\n {disp_param}")
    if att.text and att.data.isascii() and rng.random() < 0.3:
        cte, body = "7bit", att.data
    elif att.text and rng.random() < 0.3:
        cte, body = (
            "quoted-printable",
            _encode_body(att.data.decode("utf-8"), "utf-8", "quoted-printable"),
        )
    else:
        cte, body = "base64", _b64_lines(att.data)
    headers.append(f"Content-Transfer-Encoding: {cte}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode("ascii") + body


# --------------------------------------------------------------------------------------------
# the generator
# --------------------------------------------------------------------------------------------


@dataclass
class _Node:
    """A message before rendering."""

    index: int
    thread: int
    parent: _Node | None
    depth: int
    customer: _Customer
    queue: str
    when: datetime
    subject: str = ""
    message_id: str = ""
    text: str = ""  # new text written by the sender (plain)
    full_text: str = ""  # text + quoted history, as sent
    n_children: int = 0


def _make_customers(rng: random.Random, count: int) -> list[_Customer]:
    langs = list(_LANGS)
    weights = [lang.weight for lang in langs]
    customers: list[_Customer] = []
    used: set[str] = set()
    companies = (
        "Northwind",
        "Globex",
        "Initech",
        "Umbrella",
        "Hooli",
        "Vandelay",
        "Stark",
        "Wayne",
        "Tyrell",
        "Soylent",
        "Cyberdyne",
        "Aperture",
    )
    while len(customers) < count:
        lang = rng.choices(langs, weights=weights)[0]
        display, local = rng.choice(lang.names)
        domain = rng.choice(lang.domains)
        if rng.random() < 0.5:
            local = f"{local}{rng.randint(2, 99)}"
        address = f"{local}@{domain}"
        if address in used:
            continue
        used.add(address)
        client = rng.choices(_CLIENTS, weights=[c.weight for c in _CLIENTS])[0]
        tz = timezone(timedelta(hours=rng.choice(lang.tz_hours)))
        customers.append(_Customer(lang, display, address, tz, client, rng.choice(companies)))
    return customers


def _colleague(rng: random.Random, of: _Customer) -> _Customer:
    """Someone from the same company and language who joins the conversation."""
    lang = of.lang
    others = [nm for nm in lang.names if nm[0] != of.display] or list(lang.names)
    display, local = rng.choice(others)
    domain = of.address.split("@", 1)[1]
    client = rng.choices(_CLIENTS, weights=[c.weight for c in _CLIENTS])[0]
    return _Customer(lang, display, f"{local}@{domain}", of.tz, client, of.company)


def _business_time(rng: random.Random) -> datetime:
    day = rng.randrange(CORPUS_DAYS)
    hour = rng.choices(
        range(24),
        weights=[1, 1, 1, 1, 1, 2, 3, 6, 9, 10, 10, 9, 7, 9, 10, 9, 8, 6, 4, 3, 2, 2, 1, 1],
    )[0]
    return CORPUS_START + timedelta(
        days=day, hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60)
    )


def _plan_threads(rng: random.Random, n: int, customers: list[_Customer]) -> list[_Node]:
    """Decide the thread shapes: which message replies to which, who sends it, when."""
    n_replies = round(n * REPLY_SHARE)
    n_roots = n - n_replies
    if n_roots < 1:
        raise ValueError("n too small")
    roots: list[_Node] = []
    for t in range(n_roots):
        cust = rng.choice(customers)
        queue = BILLING_ADDRESS if rng.random() < BILLING_SHARE else SUPPORT_ADDRESS
        roots.append(_Node(0, t, None, 0, cust, queue, _business_time(rng)))
    threads: list[list[_Node]] = [[r] for r in roots]
    active: list[int] = []  # threads that already have replies and room for more
    fresh = list(range(n_roots))
    rng.shuffle(fresh)
    for _ in range(n_replies):
        # grow an existing conversation 45 % of the time, so some threads run 5 deep
        if active and (not fresh or rng.random() < 0.45):
            t = rng.choice(active)
        else:
            t = fresh.pop()
            active.append(t)
        msgs = threads[t]
        candidates = [m for m in msgs if m.depth < MAX_REPLY_DEPTH]
        last = msgs[-1]
        if last.depth < MAX_REPLY_DEPTH and rng.random() < 0.8:
            parent = last  # the usual ping-pong: reply to the latest
        else:
            parent = rng.choice(candidates)  # a branch: someone answers an older mail
        cust = parent.customer if rng.random() < 0.9 else _colleague(rng, parent.customer)
        delay = timedelta(minutes=3) + timedelta(hours=rng.expovariate(1 / 7.0))
        when = (max(parent.when, last.when) + delay).replace(microsecond=0)
        node = _Node(0, t, parent, parent.depth + 1, cust, roots[t].queue, when)
        parent.n_children += 1
        msgs.append(node)
        if len(msgs) >= MAX_THREAD_SIZE or not any(m.depth < MAX_REPLY_DEPTH for m in msgs):
            active.remove(t)
    nodes = [m for msgs in threads for m in msgs]
    # date order; ties broken by thread then position so parents always come first
    position = {id(m): i for msgs in threads for i, m in enumerate(msgs)}
    nodes.sort(key=lambda m: (m.when, m.thread, position[id(m)]))
    for i, m in enumerate(nodes, 1):
        m.index = i
    return nodes


def _sentences(rng: random.Random, pool: Sequence[str], k: int) -> list[str]:
    picks = rng.sample(list(pool), min(k, len(pool)))
    return [p.replace("{num}", str(rng.randint(10000, 99999))) for p in picks]


def _compose_text(rng: random.Random, node: _Node) -> str:
    lang = node.customer.lang
    if node.parent is None:
        body = _sentences(rng, lang.sentences, rng.randint(2, 5))
    else:
        body = _sentences(rng, lang.reply_sentences, rng.randint(1, 2))
        if rng.random() < 0.4:
            body += _sentences(rng, lang.sentences, 1)
    paragraphs: list[str] = [lang.greeting]
    i = 0
    while i < len(body):
        take = rng.randint(1, 2)
        paragraphs.append(" ".join(body[i : i + take]))
        i += take
    signoff = f"{lang.closing}\n{node.customer.display}"
    if rng.random() < 0.5:
        signoff += f"\n{node.customer.company}"
    if rng.random() < 0.3:
        signoff = "-- \n" + signoff
    paragraphs.append(signoff)
    out: list[str] = []
    for p in paragraphs:
        lines = p.split("\n") if "\n" in p else _wrap(p)
        out.append("\n".join(lines))
    return "\n\n".join(out)


_MAX_QUOTED_LINES = 60


def _quote(node: _Node, parent: _Node, style: str) -> str:
    lang = node.customer.lang
    when = parent.when.astimezone(parent.customer.tz)
    if style == "outlook":
        block = [
            "-----Original Message-----",
            f"From: {parent.customer.display} <{parent.customer.address}>",
            f"Sent: {format_datetime(when)}",
            f"To: {parent.queue}",
            f"Subject: {parent.subject}",
            "",
        ] + parent.full_text.split("\n")
        return "\n".join(block[:_MAX_QUOTED_LINES])
    intro = lang.quote_intro.format(
        date=when.strftime("%Y-%m-%d %H:%M"), name=parent.customer.display
    )
    quoted = [
        (">" + line) if line.startswith(">") else ("> " + line if line else ">")
        for line in parent.full_text.split("\n")
    ][:_MAX_QUOTED_LINES]
    return intro + "\n" + "\n".join(quoted)


def _html_of(text: str, quote_html: str | None, charset: str) -> str:
    paras = [p for p in text.split("\n\n")]
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">',
        "</head>",
        '<body style="font-family: Arial, sans-serif; font-size: 11pt">',
    ]
    for p in paras:
        esc = html.escape(p).replace("\n", "<br>\n")
        lines.append("<p>" + esc + "</p>")
    if quote_html is not None:
        lines.append(
            '<blockquote type="cite" style="border-left: 2px solid #ccc; padding-left: 8px">'
        )
        lines.append(quote_html)
        lines.append("</blockquote>")
    lines += ["</body>", "</html>"]
    out: list[str] = []
    for line in lines:
        out.extend(_wrap(line, 76) if len(line.encode("utf-8")) > 300 else [line])
    return "\n".join(out) + "\n"


def _pick_cte(rng: random.Random, text: str, charset: str) -> str:
    if charset == "iso-2022-jp":
        return rng.choice(("7bit", "base64"))
    if text.isascii():
        return "7bit" if rng.random() < 0.75 else "quoted-printable"
    return rng.choices(("quoted-printable", "base64", "8bit"), weights=(40, 30, 30))[0]


def _text_part(rng: random.Random, subtype: str, text: str, charset: str, ctes: list[str]) -> bytes:
    cte = _pick_cte(rng, text, charset)
    ctes.append(cte)
    params = f'; charset="{charset}"' if rng.random() < 0.6 else f"; charset={charset}"
    if subtype == "plain" and rng.random() < 0.2 and cte != "base64":
        params += "; format=flowed"
    head = f"Content-Type: text/{subtype}{params}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    return head.encode("ascii") + _encode_body(text, charset, cte)


def _boundary(rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return f"----=_Part_{rng.randint(10000, 99999)}_{rng.getrandbits(32)}.{rng.getrandbits(40)}"
    if style == 1:
        return f"=-{rng.getrandbits(96):024x}"
    return f"_000_{rng.getrandbits(64):016X}_"


def _multipart(rng: random.Random, subtype: str, parts: list[bytes]) -> tuple[str, bytes]:
    b = _boundary(rng)
    body = bytearray()
    if rng.random() < 0.4:
        body += b"This is a multi-part message in MIME format.\r\n\r\n"
    for p in parts:
        # the CRLF before a delimiter belongs to the delimiter, not to the part
        body += f"--{b}\r\n".encode("ascii") + p + b"\r\n"
    body += f"--{b}--\r\n".encode("ascii")
    return f'multipart/{subtype};\r\n boundary="{b}"', bytes(body)


def _render(rng: random.Random, node: _Node, root: _Node, used_ids: set[str]) -> GeneratedMessage:
    cust = node.customer
    lang = cust.lang
    client = cust.client
    # charset: UTF-8 mostly, a legacy one for about 15 % of non-English senders
    preferred = "utf-8"
    if lang.code != "en" and rng.random() < 0.15:
        preferred = rng.choice(lang.legacy_charsets)
    # subject
    if node.parent is None:
        pool = lang.billing_subjects if node.queue == BILLING_ADDRESS else lang.support_subjects
        node.subject = rng.choice(pool).replace("{num}", str(rng.randint(10000, 99999)))
        prefix = ""
    else:
        prefix = client.reply_prefix or "Re: "
        if lang.code == "de" and client.name in ("outlook", "thunderbird"):
            prefix = "AW: "
        elif lang.reply_prefix != "Re: " and rng.random() < 0.5:
            prefix = lang.reply_prefix
        if node.depth > 1 and rng.random() < 0.1:
            parent_prefix = node.parent.subject[: len(node.parent.subject) - len(root.subject)]
            prefix = prefix + parent_prefix if parent_prefix else prefix
        node.subject = prefix + root.subject
    # text
    new_text = _compose_text(rng, node)
    quote_text: str | None = None
    if node.parent is not None and rng.random() < 0.7:
        quote_text = _quote(node, node.parent, client.quote_style)
    node.text = new_text
    node.full_text = new_text + ("\n\n" + quote_text if quote_text else "")
    charset = _charset_for(node.full_text + node.subject + cust.display, preferred)
    # body kind
    kind = rng.choices(("plain", "alternative", "html"), weights=client.body_weights)[0]
    ctes: list[str] = []
    if kind == "plain":
        body_parts = [_text_part(rng, "plain", node.full_text, charset, ctes)]
    else:
        quote_html = None
        if quote_text is not None:
            quote_html = html.escape(quote_text).replace("\n", "<br>\n")
        html_text = _html_of(new_text, quote_html, charset)
        html_part = _text_part(rng, "html", html_text, charset, ctes)
        if kind == "alternative":
            plain_part = _text_part(rng, "plain", node.full_text, charset, ctes)
            ctype, body = _multipart(rng, "alternative", [plain_part, html_part])
            body_parts = [f"Content-Type: {ctype}\r\n\r\n".encode("ascii") + body]
        else:
            body_parts = [html_part]
    # attachments
    attachments: list[_Attachment] = []
    if rng.random() < ATTACHMENT_SHARE:
        count = rng.choices((1, 2, 3), weights=(80, 15, 5))[0]
        seen_names: set[str] = set()
        while len(attachments) < count:
            att = _make_attachment(rng, lang, rng.randint(1000, 99999))
            if att.name in seen_names:
                continue
            seen_names.add(att.name)
            attachments.append(att)
    if attachments:
        parts = body_parts + [_attachment_part(rng, a) for a in attachments]
        ctype, body = _multipart(rng, "mixed", parts)
        top = f"Content-Type: {ctype}\r\n\r\n".encode("ascii") + body
    else:
        top = body_parts[0]
    # identity and headers
    domain = cust.address.split("@", 1)[1]
    while True:
        mid = _message_id(rng, client.name, node.when, domain)
        if mid not in used_ids:
            break
    used_ids.add(mid)
    node.message_id = mid
    chain: list[str] = []
    p = node.parent
    while p is not None:
        chain.append(p.message_id)
        p = p.parent
    references = tuple(reversed(chain))
    local_when = node.when.astimezone(cust.tz)
    b_enc = lang.header_b if rng.random() < 0.85 else not lang.header_b
    header_cs = _charset_for(cust.display + node.subject, preferred)
    if header_cs == "us-ascii":
        header_cs = "utf-8"
    hdrs: list[str] = []
    hop = f"198.51.100.{rng.randint(2, 250)}"
    hdrs.append(f"Return-Path: <{cust.address}>")
    hdrs.append(
        f"Received: from mail.{domain} (mail.{domain} [{hop}])\r\n"
        f"\tby mx1.acme.test (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\r\n"
        f"\tfor <{node.queue}>; {format_datetime(node.when + timedelta(seconds=rng.randint(1, 9)))}"
    )
    hdrs.append("From: " + _format_address(cust.display, cust.address, header_cs, b_enc))
    to_disp = _QUEUE_DISPLAY[node.queue] if rng.random() < 0.7 else ""
    hdrs.append(f"To: {_format_address(to_disp, node.queue, 'utf-8', False)}")
    hdrs.append(
        "Subject: " + _header_text(node.subject[len(prefix) :], header_cs, b_enc, prefix)
        if node.parent is not None
        else "Subject: " + _header_text(node.subject, header_cs, b_enc)
    )
    hdrs.append(f"Date: {format_datetime(local_when)}")
    hdrs.append(f"Message-ID: {mid}")
    if node.parent is not None:
        hdrs.append(f"In-Reply-To: {node.parent.message_id}")
        hdrs.append(_fold_ids("References", references))
    if client.header is not None:
        hdrs.append(f"{client.header[0]}: {client.header[1]}")
    if lang.code != "en" and rng.random() < 0.5:
        hdrs.append(f"Content-Language: {lang.code}")
    hdrs.append("MIME-Version: 1.0")
    raw = ("\r\n".join(hdrs) + "\r\n").encode("ascii") + top
    return GeneratedMessage(
        raw=raw,
        message_id=mid,
        thread_id=f"T{node.thread + 1:05d}",
        parent_id=node.parent.message_id if node.parent is not None else None,
        to_address=node.queue,
        attachment_count=len(attachments),
        index=node.index,
        depth=node.depth,
        references=references,
        subject=node.subject,
        from_address=cust.address,
        from_name=cust.display,
        date=node.when.astimezone(UTC).isoformat(),
        language=lang.code,
        body_kind=kind,
        charset=charset,
        transfer_encodings=tuple(ctes),
        attachment_names=tuple(a.name for a in attachments),
        attachment_sizes=tuple(len(a.data) for a in attachments),
        attachment_sha256=tuple(hashlib.sha256(a.data).hexdigest() for a in attachments),
        has_quote=quote_text is not None,
    )


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _message_id(rng: random.Random, client: str, when: datetime, domain: str) -> str:
    """A Message-ID in the style of the sender's mail client."""
    if client == "outlook":
        return (
            f"<{''.join(rng.choice(_UPPER_DIGITS) for _ in range(10))}"
            f"{rng.getrandbits(64):016X}@{domain}>"
        )
    if client in ("thunderbird", "applemail"):
        h = f"{rng.getrandbits(128):032x}"
        u = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return f"<{u.upper() if client == 'applemail' else u}@{domain}>"
    if client == "webmail":
        return f"<CA+{''.join(rng.choice(_ALNUM) for _ in range(40))}@mail.{domain}>"
    return f"<{when.strftime('%Y%m%d%H%M%S')}.{rng.getrandbits(48):012x}@{domain}>"


def generate_corpus(n: int = 2000, seed: int = 1) -> Corpus:
    """Build the corpus of ``n`` messages; the same ``(n, seed)`` always gives the same bytes."""
    if n < 2:
        raise ValueError("n must be at least 2")
    rng = random.Random(f"omnidesk-bench-corpus:{GENERATOR_VERSION}:{seed}")
    customers = _make_customers(rng, max(12, n // 6))
    nodes = _plan_threads(rng, n, customers)
    roots: dict[int, _Node] = {}
    used_ids: set[str] = set()
    messages: list[GeneratedMessage] = []
    for node in nodes:  # date order: a parent is always rendered before its replies
        if node.parent is None:
            roots[node.thread] = node
        messages.append(_render(rng, node, roots[node.thread], used_ids))
    # thread ids in order of first appearance, so T00001 is the earliest thread
    renumber: dict[str, str] = {}
    for m in messages:
        if m.thread_id not in renumber:
            renumber[m.thread_id] = f"T{len(renumber) + 1:05d}"
    messages = [_replace_thread(m, renumber[m.thread_id]) for m in messages]
    return Corpus(messages=messages, seed=seed, n=n)


def _replace_thread(m: GeneratedMessage, tid: str) -> GeneratedMessage:
    return replace(m, thread_id=tid)


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _summary(corpus: Corpus) -> dict[str, Any]:
    c = corpus.manifest()["counts"]
    kinds: dict[str, int] = {}
    ctes: dict[str, int] = {}
    langs: dict[str, int] = {}
    for m in corpus.messages:
        kinds[m.body_kind] = kinds.get(m.body_kind, 0) + 1
        langs[m.language] = langs.get(m.language, 0) + 1
        for e in m.transfer_encodings:
            ctes[e] = ctes.get(e, 0) + 1
    depth = max((m.depth for m in corpus.messages), default=0)
    return {
        **c,
        "body_kinds": kinds,
        "transfer_encodings": ctes,
        "languages": langs,
        "max_depth": depth,
    }


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of messages (default 2000)")
    ap.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    ap.add_argument("--out", type=Path, required=True, help="directory for NNNNN.eml + manifest")
    args = ap.parse_args(list(argv) if argv is not None else None)
    corpus = generate_corpus(args.n, args.seed)
    corpus.write(args.out)
    print(json.dumps({"out": str(args.out), **_summary(corpus)}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

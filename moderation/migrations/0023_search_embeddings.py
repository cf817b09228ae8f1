"""The pgvector search index: ``SearchEmbedding`` in Django's state everywhere, its table only where
the ``vector`` extension exists (or can be created). On SQLite and on PostgreSQL without pgvector the
database side does nothing and search keeps reading ``Analysis.image_embedding`` (the exact path).
Where the table is created, the current embeddings of existing posts are copied into it.
"""
import django.contrib.postgres.indexes
import django.db.models.deletion
import django.db.models.functions.comparison
import pgvector.django.indexes
import numpy as np
import pgvector.django.vector
from django.conf import settings
from django.db import DatabaseError, migrations, models, transaction

from moderation.selectors.posts import clip_version

COPY_BATCH = 2000


def search_index_install(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or not _vector_extension_ensure(connection):
        return
    model = apps.get_model("moderation", "SearchEmbedding")
    schema_editor.create_model(model)
    table = model._meta.db_table
    # Inline, not TOASTed: a 512-float vector is just over the 2 kB TOAST threshold, and reading each
    # one back out of line doubles the cost of ranking or re-scoring a client's rows.
    schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE MAIN")
    # The database deletes a post's row with the post (or its analysis): Django never has to know this table exists.
    for column, target in (("post_id", "moderation_post"), ("analysis_id", "moderation_analysis")):
        schema_editor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fk FOREIGN KEY ({column}) "
                              f"REFERENCES {target} (id) ON DELETE CASCADE")
    _current_embeddings_copy(apps, model, using=connection.alias)


def _vector_extension_ensure(connection):
    with connection.cursor() as cursor:
        cursor.execute("SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return False
    if row[0] is None:
        try:
            # A savepoint: a refusal (pgvector is not a trusted extension) leaves the migration's transaction usable.
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except DatabaseError:
            return False
    return True


def _current_embeddings_copy(apps, model, *, using):
    posts = (apps.get_model("moderation", "Post").objects.using(using)
             .filter(current_analysis__image_embedding__isnull=False, content_deleted_at__isnull=True)
             .values_list("id", "client_id", "current_analysis_id", "current_analysis__model_version",
                          "current_analysis__image_embedding"))
    rows = []
    for post_id, client_id, analysis_id, model_version, embedding in posts.iterator(chunk_size=COPY_BATCH):
        vector = np.frombuffer(bytes(embedding), dtype="<f4")
        rows.append(model(post_id=post_id, client_id=client_id, analysis_id=analysis_id, embedding=vector,
                          clip_version=clip_version(model_version), dimensions=len(vector)))
        if len(rows) == COPY_BATCH:
            model.objects.using(using).bulk_create(rows)
            rows = []
    model.objects.using(using).bulk_create(rows)


def search_index_uninstall(apps, schema_editor):
    model = apps.get_model("moderation", "SearchEmbedding")
    if model._meta.db_table in schema_editor.connection.introspection.table_names():
        schema_editor.delete_model(model)


class Migration(migrations.Migration):

    dependencies = [
        ('moderation', '0019_appeals'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='SearchEmbedding',
                    fields=[
                        ('post', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name='+', serialize=False, to='moderation.post')),
                        ('clip_version', models.CharField(max_length=255)),
                        ('dimensions', models.PositiveSmallIntegerField()),
                        ('embedding', pgvector.django.vector.VectorField()),
                        ('analysis', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='moderation.analysis')),
                        ('client', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'indexes': [models.Index(fields=['client', 'clip_version', 'dimensions'], name='moderation_search_client'), pgvector.django.indexes.HnswIndex(django.contrib.postgres.indexes.OpClass(django.db.models.functions.comparison.Cast('embedding', pgvector.django.vector.VectorField(dimensions=512)), name='vector_cosine_ops'), condition=models.Q(('dimensions', 512)), ef_construction=64, m=16, name='moderation_search_hnsw_512'), pgvector.django.indexes.HnswIndex(django.contrib.postgres.indexes.OpClass(django.db.models.functions.comparison.Cast('embedding', pgvector.django.vector.VectorField(dimensions=768)), name='vector_cosine_ops'), condition=models.Q(('dimensions', 768)), ef_construction=64, m=16, name='moderation_search_hnsw_768'), pgvector.django.indexes.HnswIndex(django.contrib.postgres.indexes.OpClass(django.db.models.functions.comparison.Cast('embedding', pgvector.django.vector.VectorField(dimensions=1024)), name='vector_cosine_ops'), condition=models.Q(('dimensions', 1024)), ef_construction=64, m=16, name='moderation_search_hnsw_1024')],
                    },
                ),
            ],
        ),
        # After the state operation, so that its ``apps`` has the model.
        migrations.RunPython(search_index_install, search_index_uninstall),
    ]

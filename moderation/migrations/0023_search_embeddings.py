"""The pgvector search index: ``SearchEmbedding`` in Django's state everywhere, its table only where
the ``vector`` extension exists (or can be created). On SQLite and on PostgreSQL without pgvector the
database side does nothing and search keeps reading ``Analysis.image_embedding`` (the exact path).
Where the table is created, the current embeddings of existing posts are copied into it.
"""
import django.contrib.postgres.indexes
import django.db.models.deletion
import django.db.models.functions.comparison
import pgvector.django.indexes
import pgvector.django.vector
from django.conf import settings
from django.db import migrations, models

from moderation.services.search_pgvector import search_index_install


def search_index_create(apps, schema_editor):
    search_index_install(apps=apps, schema_editor=schema_editor)


def search_index_uninstall(apps, schema_editor):
    model = apps.get_model("moderation", "SearchEmbedding")
    if model._meta.db_table in schema_editor.connection.introspection.table_names():
        schema_editor.delete_model(model)


class Migration(migrations.Migration):

    dependencies = [
        ('moderation', '0022_analysis_sentence_embedding'),
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
        migrations.RunPython(search_index_create, search_index_uninstall),
    ]

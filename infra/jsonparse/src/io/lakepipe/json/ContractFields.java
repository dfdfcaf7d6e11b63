package io.lakepipe.json;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF4;
import org.apache.spark.sql.catalyst.expressions.variant.SchemaOfVariant$;
import org.apache.spark.types.variant.Variant;
import org.apache.spark.types.variant.VariantBuilder;
import org.apache.spark.types.variant.VariantUtil;

/**
 * One parse of a record's JSON text for a data contract (pipelines/engine/validation.py, the JVM parse).
 *
 * <p>The text is parsed by Spark's own {@code VariantBuilder.parseJson}, the code behind {@code try_parse_json},
 * with the same two settings, so what is valid JSON, and the JSON type of every value, are exactly Spark's. Then
 * each contract field's value is read straight from the variant: its type as {@code schema_of_variant} prints it
 * (Spark's own function), and its text (a string's value; a number's exact digits; {@code true}/{@code false}).
 * Spark's {@code variant_get} would build and validate a cast expression for every value read: most of the SQL
 * parse's cost. The typed values, the contract's checks and {@code extra} stay Spark expressions over these.
 *
 * <p>Arguments: the text (null: invalid), the layout (lines of tab-separated names, see {@link Layout}), and
 * Spark's {@code spark.sql.variant.allowDuplicateKeys} and {@code spark.sql.variant.validateUnicodeInJsonParsing}.
 * Result: {@code problem} (null, {@code invalid_json} or {@code not_an_object}), {@code has_extra} (a key no field
 * reads), then the fields' {@code types} and {@code texts}, in the contract's order; a null type where no path
 * holds the field.
 */
public final class ContractFields implements UDF4<String, String, Boolean, Boolean, Row> {
    private static final long serialVersionUID = 1L;
    private transient String lastLayoutText;
    private transient Layout layout;

    @Override
    public Row call(String json, String layoutText, Boolean allowDuplicateKeys, Boolean validateUnicode) {
        if (!layoutText.equals(lastLayoutText)) {
            layout = new Layout(layoutText);
            lastLayoutText = layoutText;
        }
        int n = layout.paths.size();
        String[] types = new String[n];
        String[] texts = new String[n];
        Object[] out = {null, null, types, texts};
        Variant v = null;
        if (json != null) {
            try {
                v = VariantBuilder.parseJson(json, allowDuplicateKeys, validateUnicode);
            } catch (Exception | StackOverflowError e) { // what try_parse_json turns into null
                v = null;
            }
        }
        if (v == null) {
            out[0] = "invalid_json";
            return RowFactory.create(out);
        }
        if (v.getType() != VariantUtil.Type.OBJECT) {
            out[0] = "not_an_object";
            return RowFactory.create(out);
        }
        out[1] = layout.hasExtra(v);
        for (int i = 0; i < n; i++) {
            String[][] paths = layout.paths.get(i);
            Variant value = null;
            if (paths.length == 1) {
                value = at(v, paths[0]);
            } else {
                for (String[] path : paths) { // the first path that holds a value other than JSON null
                    Variant candidate = at(v, path);
                    if (candidate != null && candidate.getType() != VariantUtil.Type.NULL) {
                        value = candidate;
                        break;
                    }
                }
            }
            if (value != null) {
                types[i] = SchemaOfVariant$.MODULE$.printSchema(SchemaOfVariant$.MODULE$.schemaOf(value));
                texts[i] = text(value);
            }
        }
        return RowFactory.create(out);
    }

    private static Variant at(Variant v, String[] path) {
        for (String key : path) {
            if (v.getType() != VariantUtil.Type.OBJECT) {
                return null;
            }
            v = v.getFieldByKey(key);
            if (v == null) {
                return null;
            }
        }
        return v;
    }

    /** A scalar's text, from which Spark casts it exactly as it would cast the variant's value; null otherwise. */
    private static String text(Variant v) {
        switch (v.getType()) {
            case STRING:
                return v.getString();
            case LONG:
                return Long.toString(v.getLong());
            case DECIMAL:
                return v.getDecimal().toPlainString();
            case DOUBLE:
                return Double.toString(v.getDouble()); // read back to the same double
            case BOOLEAN:
                return Boolean.toString(v.getBoolean());
            default:
                return null;
        }
    }

    /**
     * What the contract reads. Lines, tab-separated: {@code F <path> [<path>...]} per field in order (a path is
     * dotted names), {@code K <key>...} the top-level keys that are not extra, {@code O <object> <key>...} per
     * object whose unknown keys are extra too.
     */
    static final class Layout {
        final List<String[][]> paths = new ArrayList<>();
        final Set<String> known = new HashSet<>();
        final Map<String, Set<String>> objects = new HashMap<>();

        Layout(String text) {
            for (String line : text.split("\n")) {
                String[] parts = line.split("\t", -1);
                String[] rest = Arrays.copyOfRange(parts, 1, parts.length);
                switch (parts[0]) {
                    case "F":
                        String[][] field = new String[rest.length][];
                        for (int i = 0; i < rest.length; i++) {
                            field[i] = rest[i].split("\\.");
                        }
                        paths.add(field);
                        break;
                    case "K":
                        known.addAll(Arrays.asList(rest));
                        break;
                    case "O":
                        objects.put(rest[0], new HashSet<>(Arrays.asList(rest).subList(1, rest.length)));
                        break;
                    default:
                        throw new IllegalArgumentException("unknown layout line: " + line);
                }
            }
        }

        boolean hasExtra(Variant object) {
            int size = object.objectSize();
            for (int i = 0; i < size; i++) {
                Variant.ObjectField f = object.getFieldAtIndex(i);
                if (!known.contains(f.key)) {
                    return true;
                }
                Set<String> inner = objects.get(f.key);
                if (inner != null && f.value.getType() == VariantUtil.Type.OBJECT) {
                    int innerSize = f.value.objectSize();
                    for (int j = 0; j < innerSize; j++) {
                        if (!inner.contains(f.value.getFieldAtIndex(j).key)) {
                            return true;
                        }
                    }
                }
            }
            return false;
        }
    }
}

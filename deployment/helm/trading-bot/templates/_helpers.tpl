{{/* Chart name and release-scoped names. */}}
{{- define "trading-bot.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trading-bot.serviceAccountName" -}}
{{- default (include "trading-bot.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "trading-bot.configName" -}}
{{- printf "%s-config" (include "trading-bot.fullname" .) -}}
{{- end -}}

{{/* Labels shared by every object; pass (dict "root" $ "name" "trader" "component" "trader"). */}}
{{- define "trading-bot.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: trading-bot
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "trading-bot.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* <registry>/<service>:<tag>; pass (dict "root" $ "name" "trader"). */}}
{{- define "trading-bot.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .root.Values.image.registry) .name $tag -}}
{{- end -}}

{{/* One service block merged over serviceDefaults; pass (dict "root" $ "name" "trader"). */}}
{{- define "trading-bot.service" -}}
{{- $values := index .root.Values.services .name -}}
{{- toYaml (mustMergeOverwrite (deepCopy .root.Values.serviceDefaults) (deepCopy $values)) -}}
{{- end -}}

{{/* The environment every platform container gets: plain settings and the two URLs from Secrets. */}}
{{- define "trading-bot.commonEnv" -}}
- name: TRADEBOT_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.database.name }}
      key: {{ .Values.secrets.database.key }}
- name: TRADEBOT_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.amqp.name }}
      key: {{ .Values.secrets.amqp.key }}
{{- end -}}

{{- define "trading-bot.podSpecCommon" -}}
serviceAccountName: {{ include "trading-bot.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
